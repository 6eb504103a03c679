//! The hash map type of the relay path.

use std::collections::HashMap;

/// Hash maps on the relay path. foldhash with a per-map random seed: several times faster
/// than SipHash for these small keys, and entries are only ever inserted for
/// authenticated clients within their quotas, which is the exposure a minimally
/// DoS-resistant hash is fit for.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
