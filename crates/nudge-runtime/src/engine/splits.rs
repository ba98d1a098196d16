//! What the arms of splits that optimise (`split optimise`) have done: per
//! flow, split and arm, the instances that took the arm and those of them
//! that reached the flow's goal. The choice of the next arm reads them;
//! they live in the engine's head, saved with each commit.

use std::collections::BTreeMap;

use nudge_vm::bandit::Arm;
use serde::{Deserialize, Serialize};

/// The counts of every arm of every split that optimises, by flow name,
/// split number (in the flow's source order) and arm name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    arms: BTreeMap<(String, u16, String), (u64, u64)>,
}

/// One arm's counts, as [`SplitCounts::all`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmCounts {
    /// The flow's name.
    pub flow: String,
    /// The split's number in the flow.
    pub split: u16,
    /// The arm's name.
    pub arm: String,
    /// Instances that took the arm.
    pub entries: u64,
    /// Those that reached the flow's goal.
    pub conversions: u64,
}

impl SplitCounts {
    /// The counts of the arms named `arms` of split `split` of flow `flow`,
    /// in that order (zero for an arm never taken).
    pub fn of<'n>(&self, flow: &str, split: u16, arms: impl Iterator<Item = &'n str>) -> Vec<Arm> {
        arms.map(|a| {
            let (entries, conversions) = self
                .arms
                .get(&(flow.to_string(), split, a.to_string()))
                .copied()
                .unwrap_or_default();
            Arm {
                entries,
                conversions,
            }
        })
        .collect()
    }

    /// An instance took arm `arm`.
    pub fn entered(&mut self, flow: &str, split: u16, arm: &str) {
        let c = self
            .arms
            .entry((flow.to_string(), split, arm.to_string()))
            .or_default();
        c.0 = c.0.saturating_add(1);
    }

    /// An instance that took arm `arm` reached the goal.
    pub fn converted(&mut self, flow: &str, split: u16, arm: &str) {
        let c = self
            .arms
            .entry((flow.to_string(), split, arm.to_string()))
            .or_default();
        c.1 = c.1.saturating_add(1);
    }

    /// Every arm's counts, by flow, split and arm name.
    pub fn all(&self) -> Vec<ArmCounts> {
        self.arms
            .iter()
            .map(|((flow, split, arm), &(entries, conversions))| ArmCounts {
                flow: flow.clone(),
                split: *split,
                arm: arm.clone(),
                entries,
                conversions,
            })
            .collect()
    }
}
