//! Deploys that change the schemas: stored values and older releases' code
//! move onto the new bundle's tables (see `nudge_bytecode::Layout`).
//!
//! Invariant: every release that still has something to run (a live
//! instance or a goal being watched, by a customer in memory or, for all
//! the engine knows, by one left in the store) has the newest release's
//! schemas, enums and profile, and every value the engine holds in memory
//! is laid out by them (stored rows move when read: see `super::tables`).
//! Releases with nothing left to run keep their bundle as it was and never
//! run code again (only the newest release starts instances).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use nudge_bytecode::{Bundle, Layout, Rebased, SchemaDiff};
use nudge_vm::Vm;
use serde::{Deserialize, Serialize};

use super::customer::{Customer, Traits};
use super::deploy::DeployError;
use super::{Machine, flow_runs, rel_mut};

/// Where the bundles that rebased releases run are kept: they must live as
/// long as the engine, like the deployed bundles themselves.
pub type Bundles = typed_arena::Arena<Bundle>;

/// A checked schema change, ready to apply.
pub(super) struct Evolution {
    layout: Layout,
    /// Releases still in use, with their code on the new tables.
    rebased: Vec<(u32, Rebased)>,
}

impl Evolution {
    /// What the deploy adds and removes.
    pub(super) fn diff(&self) -> &SchemaDiff {
        self.layout.diff()
    }
}

/// Whether two bundles lay records out identically (no migration needed).
pub(super) fn same_tables(a: &Bundle, b: &Bundle) -> bool {
    a.schemas == b.schemas && a.enums == b.enums && a.profile == b.profile
}

impl Machine<'_> {
    /// Checks that the engine's state can move onto `new`'s schemas:
    /// every change keeps stored values meaningful, and no instance that
    /// will stay on an older release reads what `new` removes. `carried`
    /// says whether an instance (by slot) moves to the new release, judged
    /// on its release's rebased code. Nothing changes here.
    pub(super) fn plan_evolution(
        &self,
        new: &Bundle,
        carried: &dyn Fn(&Rebased, &nudge_bytecode::Flow, &super::Instance) -> bool,
    ) -> Result<Evolution, DeployError> {
        let old = self.bundle();
        let layout = Layout::between(old, new).map_err(|conflicts| DeployError::Incompatible {
            problems: conflicts.iter().map(ToString::to_string).collect(),
        })?;
        let mut in_use: Vec<u32> = self
            .instances
            .iter()
            .flatten()
            .map(|i| i.release)
            .chain(
                self.customers
                    .values()
                    .flat_map(|c| c.rare().goals.iter().map(|g| g.release)),
            )
            .collect();
        // The replaced release too: the deploy compares its triggers with the new ones.
        in_use.push(self.current());
        // Customers left in the store are not in memory to say which goals
        // they watch: every release still on the replaced one's tables
        // whose flows have a goal may be watched by one of them.
        in_use.extend((0..self.releases.len() as u32).filter(|&r| {
            let b = self.bundle_of(r);
            same_tables(b, old) && b.flows.iter().any(|f| f.goal.is_some())
        }));
        in_use.sort_unstable();
        in_use.dedup();
        let rebased: Vec<(u32, Rebased)> = in_use
            .into_iter()
            .map(|r| (r, self.bundle_of(r).rebase(new, &layout)))
            .collect();
        // Instances that stay must not read what is gone: per flow version,
        // how many stay and what they read.
        let mut stuck: BTreeMap<(String, String), (u64, Vec<String>)> = BTreeMap::new();
        for inst in self.instances.iter().flatten() {
            let Some((_, rb)) = rebased.iter().find(|(r, _)| *r == inst.release) else {
                continue;
            };
            // A rebased bundle keeps its flows, with one list per flow.
            let (Some(missing), Some(flow)) = (
                rb.flows.get(inst.flow as usize),
                rb.bundle.flows.get(inst.flow as usize),
            ) else {
                continue;
            };
            if missing.is_empty() {
                continue;
            }
            if carried(rb, flow, inst) {
                continue;
            }
            let e = stuck
                .entry((flow.name.clone(), flow.version.clone()))
                .or_insert_with(|| (0, missing.clone()));
            e.0 += 1;
        }
        if !stuck.is_empty() {
            let problems = stuck
                .into_iter()
                .map(|((flow, version), (n, missing))| {
                    format!(
                        "{n} instance{} of `{flow}` (version {version}) in flight would stay on code that reads {}, which the new bundle removes; deploy once they have finished, or keep {}",
                        if n == 1 { "" } else { "s" },
                        missing.join(", "),
                        if missing.len() == 1 { "it" } else { "them" },
                    )
                })
                .collect();
            return Err(DeployError::Incompatible { problems });
        }
        Ok(Evolution { layout, rebased })
    }
}

/// What moves one customer's values onto the new tables
/// ([`Migration::customer`]), once [`apply`] moved everything else. Kept
/// with the state for the rows a deploy leaves in the store (see
/// [`super::tables`]).
#[derive(Serialize, Deserialize)]
pub(crate) struct Migration {
    layout: Layout,
    /// Goals (release, flow) whose rule reads what is gone: they end.
    gone_goals: BTreeSet<(u32, u32)>,
}

impl Migration {
    /// Moves `cust`'s profile, events and goal watches onto the new
    /// tables. Returns how many of its goal watches ended because their
    /// rule reads something removed.
    pub(super) fn customer(&self, cust: &mut Customer) -> u64 {
        let layout = &self.layout;
        if let Some(p) = layout.record(&cust.profile.to_record()) {
            cust.profile = p.into();
        }
        cust.events.retain_mut(|e| match layout.schema(e.schema) {
            Some(s) => {
                e.schema = s;
                e.value = layout.value(&e.value);
                true
            }
            None => false,
        });
        let mut ended = 0;
        if let Some(rare) = cust.rare_if() {
            let before = rare.goals.len();
            rare.goals
                .retain(|g| !self.gone_goals.contains(&(g.release, g.flow)));
            ended += (before - rare.goals.len()) as u64;
            for g in &mut rare.goals {
                g.trigger = layout.value(&g.trigger);
            }
        }
        ended
    }
}

/// Moves every release in use and every value the engine holds but its
/// customers' onto the new tables; the customers are moved one at a time
/// by the [`Migration`] returned (a deploy reads them back in turn).
pub(super) fn apply<'b>(
    engine: &mut Machine<'b>,
    ev: Evolution,
    new: &'b Bundle,
    arena: &'b Bundles,
) -> Migration {
    let Evolution { layout, rebased } = ev;
    let gone_goals: BTreeSet<(u32, u32)> = rebased
        .iter()
        .flat_map(|(r, rb)| {
            rb.goals
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.is_empty())
                .map(move |(f, _)| (*r, f as u32))
        })
        .collect();
    for (r, rb) in rebased {
        let bundle: &'b Bundle = arena.alloc(rb.bundle);
        let release = rel_mut(&mut engine.releases, r);
        release.bundle = bundle;
        release.vm = Vm::new(bundle);
        // The same flows, so the same keys.
        let keys: Vec<u32> = release.flows.iter().map(|f| f.key).collect();
        release.flows = flow_runs(bundle, keys);
        // Only the newest release starts instances; its map is rebuilt by `add_release`.
        release.triggered_by.clear();
    }
    let migrate = |v: &nudge_bytecode::Value| layout.value(v);
    // One at a time, so that a take writes the live instances only, not a
    // whole state that would read every stored customer back.
    for id in 0..engine.instances.len() as u32 {
        if engine.instances.get(id).is_some()
            && let Some(inst) = engine.instances.get_mut(id)
        {
            inst.migrate_values(&migrate);
        }
    }
    engine.by_wire = by_wire(new);
    engine.traits = Traits::of(new);
    // Sets of schema numbers: kept schemas renumbered, removed ones gone.
    let remap = |set: &HashSet<u32>| -> HashSet<u32> {
        set.iter().filter_map(|&s| layout.schema(s)).collect()
    };
    engine.remembered = engine
        .remembered
        .iter()
        .filter_map(|&s| layout.schema(s))
        .collect();
    engine.remembered.extend(new.retention.read());
    engine.forever = remap(&engine.forever);
    engine.goal_events = remap(&engine.goal_events);
    Migration { layout, gone_goals }
}

/// Event schemas by wire name.
pub(super) fn by_wire(bundle: &Bundle) -> HashMap<String, u32> {
    bundle
        .schemas
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.wire.clone().map(|w| (w, i as u32)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::same_tables;
    use crate::engine::fixtures::{RowsPager, apply};
    use crate::engine::{Bundles, Config, Engine, MemorySink};

    fn flow(subject: &str) -> String {
        format!(
            "message m() {{\n  channel email\n  subject \"{subject}\"\n  body \"b\"\n}}\n\
             flow f {{\n  trigger checkout_started\n  goal order_completed within 7d\n  send m()\n}}\n"
        )
    }

    #[test]
    fn releases_whose_goals_customers_in_the_store_may_watch_move_onto_new_tables() {
        let v1 = nudge_test_support::build(&[("t.flow", &flow("s"))]);
        let v2 = nudge_test_support::build(&[("t.flow", &flow("t"))]);
        let v3 = nudge_test_support::build(&[
            ("t.flow", &flow("t")),
            ("tier.flow", "profile {\n  tier: string = \"gold\"\n}\n"),
        ]);
        let arena = Bundles::new();
        let mut engine = Engine::new(&v1, MemorySink::default(), Config::default(), i64::MIN);
        apply(
            &mut engine,
            &[
                r#"{"type":"identify","userId":"u0","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"u0@example.com","consent":{"email":true}}}"#,
                r#"{"type":"track","event":"Checkout Started","userId":"u0","timestamp":"2026-01-05T10:00:00Z","properties":{"value":5}}"#,
            ],
        );
        assert_eq!(engine.sink().outbox.len(), 1);
        let mut rows = crate::engine::rows::MemoryRows::default();
        rows.apply(engine.take_changes().unwrap());
        // A restart leaves the customer, and the goal it watches on the
        // first release, in the store.
        let store = std::sync::Arc::new(std::sync::Mutex::new(rows.clone()));
        let mut restored = Engine::new(&v1, MemorySink::default(), Config::default(), i64::MIN);
        restored.set_pager(Box::new(RowsPager(store)));
        restored
            .restore_rows(rows.rows_without_customers(), &v1, &arena)
            .unwrap();
        assert_eq!(restored.customers.in_memory(), 0);
        restored.deploy(&v2, &arena).unwrap();
        restored.deploy(&v3, &arena).unwrap();
        assert!(
            same_tables(restored.bundle_of(0), &v3),
            "the first release, whose goal a stored customer watches, is on the new tables"
        );
        apply(
            &mut restored,
            &[
                r#"{"type":"track","event":"Order Completed","userId":"u0","timestamp":"2026-01-06T10:00:00Z","properties":{"order_id":"o1","total":5}}"#,
            ],
        );
        assert_eq!(restored.stats().flows["f"].conversions, 1);
    }
}
