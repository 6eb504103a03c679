//! Allocation quotas shared by every shard, so that `max_allocations` and
//! `max_allocations_per_user` mean exactly what they say however clients hash onto shards.
//! Taken once per Allocate (never on the relay path): an atomic for the total and a small
//! locked map for the per-user counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::auth::user_id;

/// Which quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    Server,
    User,
}

#[derive(Debug)]
pub struct Quotas {
    max_total: usize,
    max_per_user: usize,
    total: AtomicUsize,
    per_user: Mutex<HashMap<String, usize>>,
    /// EVEN-PORT reservations holding a slot, by token, with the user they count for.
    /// Shared because the Allocate that redeems a token often lands on another shard.
    reservations: Mutex<HashMap<[u8; 8], String>>,
}

impl Quotas {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Quotas {
            max_total,
            max_per_user,
            total: AtomicUsize::new(0),
            per_user: Mutex::new(HashMap::new()),
            reservations: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one slot for `username`, or says which quota is full. Exact at the cap.
    pub fn acquire(&self, username: &str) -> Result<(), QuotaExceeded> {
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .map_err(|_| QuotaExceeded::Server)?;
        let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = users.entry(user_id(username).to_owned()).or_default();
        if *n >= self.max_per_user {
            if *n == 0 {
                users.remove(user_id(username));
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaExceeded::User);
        }
        *n += 1;
        Ok(())
    }

    /// Takes a slot for an allocation or reservation carried over from another process
    /// (handover). It existed before, so it is counted even past a cap the new config
    /// lowered: the user then gets 486 until enough of them end.
    pub fn restore(&self, username: &str) {
        self.total.fetch_add(1, Ordering::AcqRel);
        let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        *users.entry(user_id(username).to_owned()).or_default() += 1;
    }

    /// The user a reservation's slot is held for, if it still holds one.
    pub fn reservation_user(&self, token: &[u8; 8]) -> Option<String> {
        let r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        r.get(token).cloned()
    }

    /// Gives back a slot taken by `acquire`.
    pub fn release(&self, username: &str) {
        let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let key = user_id(username);
        if let Some(n) = users.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                users.remove(key);
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Files a slot `username` already acquired under a reservation token.
    pub fn hold_reservation(&self, token: [u8; 8], username: &str) {
        let mut r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(token, username.to_owned());
    }

    /// Ends a reservation (redeemed on any shard, or expired), giving back its slot once.
    pub fn end_reservation(&self, token: &[u8; 8]) {
        let user = {
            let mut r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
            r.remove(token)
        };
        if let Some(user) = user {
            self.release(&user);
        }
    }

    /// Slots in use, server-wide.
    pub fn in_use(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Every allocation slot of the server is taken (`relay.max_allocations`).
    pub fn is_full(&self) -> bool {
        self.in_use() >= self.max_total
    }

    /// Slots `username`'s user id holds.
    pub fn user_in_use(&self, username: &str) -> usize {
        let users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        users.get(user_id(username)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_credential_of_one_user_id_shares_its_quota() {
        let q = Quotas::new(100, 2);
        assert_eq!(q.acquire("1000:alice"), Ok(()));
        assert_eq!(q.acquire("2000:alice"), Ok(()));
        assert_eq!(q.acquire("3000:alice"), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("3000:bob"), Ok(()));
        q.release("1000:alice");
        assert_eq!(q.acquire("4000:alice"), Ok(()));
        assert_eq!(q.in_use(), 3);
    }

    #[test]
    fn server_quota_is_exact_under_contention() {
        let q = Arc::new(Quotas::new(50, 1000));
        let granted: usize = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| q.acquire(&format!("1:user{t}-{i}")).is_ok())
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(granted, 50);
        assert_eq!(q.in_use(), 50);
    }
}
