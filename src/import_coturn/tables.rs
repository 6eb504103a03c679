//! The coturn options that need no setting, and those turnpike cannot express.

/// Options that need no setting in turnpike: it always behaves this way.
pub(super) const NO_OP: &[(&str, &str)] = &[
    ("lt-cred-mech", "long-term credentials are always on"),
    ("fingerprint", "FINGERPRINT is always accepted"),
    ("no-dtls", "turnpike has no DTLS listener"),
    ("no-tcp-relay", "turnpike relays over UDP only"),
    (
        "no-multicast-peers",
        "multicast peers are refused by default",
    ),
    ("no-loopback-peers", "loopback peers are refused by default"),
    ("verbose", "log.level \"info\" is the default"),
    ("no-stdout-log", "turnpike logs to stderr"),
    ("no-cli", "turnpike has no admin CLI"),
    ("no-tlsv1", "TLS 1.0 is never offered"),
    ("no-tlsv1_1", "TLS 1.1 is never offered"),
];

/// Options turnpike cannot express, with the reason given to the admin.
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "no-auth",
        "turnpike always requires authentication (open relays get abused)",
    ),
    (
        "userdb",
        "no user database: export the users to [[auth.users]] or use REST secrets",
    ),
    ("psql-userdb", "no user database (PostgreSQL)"),
    ("mysql-userdb", "no user database (MySQL)"),
    ("mongo-userdb", "no user database (MongoDB)"),
    ("redis-userdb", "no user database (Redis)"),
    ("redis-statsdb", "no Redis statistics: scrape /metrics"),
    (
        "oauth",
        "third-party (OAuth) authorization is not supported",
    ),
    (
        "server-name",
        "no per-server-name settings; realm is in server.realm",
    ),
    (
        "alt-listening-port",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "alt-tls-listening-port",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "rfc5780",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "aux-server",
        "no auxiliary listeners: add the address to server.listen_udp",
    ),
    ("udp-self-balance", "not needed: shards share each UDP port"),
    (
        "tls-alternate-server",
        "server.alternate names STUN/TURN addresses only, not TLS ones",
    ),
    (
        "listening-device",
        "binding to a device is not supported: use listening addresses",
    ),
    (
        "relay-device",
        "binding to a device is not supported: use relay.ipv4/ipv6",
    ),
    ("no-udp-relay", "turnpike relays over UDP only"),
    ("bps-capacity", "no server-wide bandwidth limit"),
    (
        "channel-lifetime",
        "channel lifetime is fixed at RFC 8656's 10 minutes",
    ),
    (
        "permission-lifetime",
        "permission lifetime is fixed at RFC 8656's 5 minutes",
    ),
    (
        "pkey-pwd",
        "encrypted private keys are not supported: decrypt the key file",
    ),
    (
        "cipher-list",
        "TLS uses rustls's fixed modern cipher suites (TLS 1.2 and 1.3)",
    ),
    (
        "ec-curve-name",
        "TLS uses rustls's fixed modern key exchange groups",
    ),
    ("dh-file", "no finite-field Diffie-Hellman in rustls"),
    ("dh566", "no finite-field Diffie-Hellman in rustls"),
    ("dh1066", "no finite-field Diffie-Hellman in rustls"),
    (
        "no-tlsv1_2",
        "TLS 1.2 stays on (rustls offers only 1.2 and 1.3)",
    ),
    (
        "CA-file",
        "no client certificate checks: clients authenticate with TURN credentials",
    ),
    (
        "log-file",
        "turnpike logs to stderr (the journal under systemd)",
    ),
    (
        "syslog",
        "turnpike logs to stderr (the journal under systemd)",
    ),
    (
        "simple-log",
        "turnpike logs to stderr; no log file rotation",
    ),
    ("new-log-timestamp", "log format is set by log.format"),
    (
        "new-log-timestamp-format",
        "log format is set by log.format",
    ),
    ("pidfile", "no PID file: systemd tracks the process"),
    ("proc-user", "run under the service unit's user instead"),
    ("proc-group", "run under the service unit's group instead"),
    ("cli-ip", "turnpike has no telnet admin CLI"),
    ("cli-port", "turnpike has no telnet admin CLI"),
    ("cli-password", "turnpike has no telnet admin CLI"),
    (
        "cli-max-output-sessions",
        "turnpike has no telnet admin CLI",
    ),
    ("web-admin", "no web admin: use /metrics and SIGHUP reload"),
    (
        "web-admin-ip",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "web-admin-port",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "web-admin-listen-on-workers",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "mobility",
        "ICE mobility (MOBILITY-TICKET) is not supported",
    ),
    (
        "secure-stun",
        "STUN Binding is always answered without auth",
    ),
    ("no-stun", "STUN Binding is always answered"),
    ("stun-only", "turnpike always offers TURN"),
    (
        "no-software-attribute",
        "SOFTWARE is not configurable in turnpike",
    ),
    (
        "check-origin-consistency",
        "ORIGIN attributes are not checked",
    ),
    ("keep-address-family", "address families follow RFC 8656"),
    (
        "allocation-default-address-family",
        "IPv4 is the default family (RFC 8656)",
    ),
    ("dtls-listening-port", "turnpike has no DTLS listener"),
    ("no-rfc5780", "RFC 5780 is not offered anyway"),
    (
        "response-origin-only-with-rfc5780",
        "RFC 5780 is not offered anyway",
    ),
    (
        "prometheus-username-labels",
        "per-user metric labels are not exported (unbounded series)",
    ),
    ("mobility-ticket", "ICE mobility is not supported"),
    ("sha256", "only SHA-1 message integrity keys are supported"),
    ("sha384", "only SHA-1 message integrity keys are supported"),
    ("sha512", "only SHA-1 message integrity keys are supported"),
    (
        "max-allocate-timeout",
        "relay sockets are bound at once; no timeout to tune",
    ),
    (
        "db",
        "no user database: export the users to [[auth.users]] or use REST secrets",
    ),
];
