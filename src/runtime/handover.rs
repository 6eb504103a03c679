//! The shell's part of a process handover (issue 18), the old process's side: every shard
//! exports and stands still (`Node::export_for_handover`) until told whether the new
//! process took over. The new process's side is adopt.rs; how the two processes find
//! each other is app/handover.rs's business.

use std::sync::mpsc::{Sender, channel};

use super::Node;
use super::fastpath::Attached;
use super::shard::Control;
use super::shard::export::{HandOverRequest, ShardExport, Verdict};

/// Every shard's export, each shard standing still until `settle`.
pub struct Exported {
    pub shards: Vec<ShardExport>,
    verdicts: Vec<Sender<Verdict>>,
    /// The kernel fast path, detached for the export: attached again if the new process
    /// does not take over (it attaches its own when it does).
    fastpath: Option<Attached>,
}

impl Exported {
    /// Tells every shard what became of its export (`Verdict`).
    pub fn settle(self, verdict: Verdict) {
        if verdict == Verdict::Resume
            && let Some(f) = &self.fastpath
        {
            f.resume();
        }
        for v in &self.verdicts {
            let _ = v.send(verdict);
        }
    }
}

impl Node {
    /// Asks every shard to export its state and stand still. None when a shard did not
    /// answer (then every shard resumes). The kernel fast path is detached first, so that
    /// the counters the shards read into their states are final.
    pub fn export_for_handover(&self) -> Option<Exported> {
        if let Some(f) = &self.fastpath
            && let Err(e) = f.pause()
        {
            tracing::warn!(error = %e, "handover: the kernel fast path could not be detached");
            return None;
        }
        let (tx, rx) = channel();
        let mut verdicts = Vec::new();
        {
            let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
            for (ctl, waker, _) in shards.iter() {
                let (vtx, vrx) = channel();
                let req = HandOverRequest {
                    reply: tx.clone(),
                    verdict: vrx,
                };
                let _ = ctl.send(Control::HandOver(Box::new(req)));
                let _ = waker.wake();
                verdicts.push(vtx);
            }
        }
        drop(tx);
        let mut shards = self.collect(rx);
        let exported = Exported {
            shards: Vec::new(),
            verdicts,
            fastpath: self.fastpath.clone(),
        };
        if shards.len() != exported.verdicts.len() {
            exported.settle(Verdict::Resume);
            return None;
        }
        shards.sort_by_key(|s| s.index);
        Some(Exported { shards, ..exported })
    }
}
