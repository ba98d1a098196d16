//! One customer's state taken out of one engine and put into another: how
//! a cluster moves a customer absorbed by a merge to the partition of the
//! customer it joins, so that one engine holds the whole person.
//!
//! A handoff carries the customer (profile, history, sends, flow memory,
//! goal watches), its live instances, and what their numbers mean in the
//! giving engine: flow and message keys by name, releases by their bundle.
//! The taking engine renumbers all of it in its own terms (keys, release
//! numbers, instance slots and generations, event arrival numbers) and sets
//! the timers again from the instances' and triggers' own state, so the
//! two engines need not share any numbering, only the code.
//!
//! Taking a customer in does not join it to anyone: the call that joined
//! the two (applied next, in the taking engine) does that, exactly as a
//! single engine joins two customers it holds, with every re-check of
//! exits, waits and goals.

use std::collections::HashMap;
use std::sync::Arc;

use nudge_bytecode::Bundle;
use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointError, ROWS_FORMAT_6, layout};
use super::customer::Customer;
use super::instance::{Instance, Waiting};
use super::{Bundles, Machine, intern};
use crate::identity::{CustomerId, Identity, Join};

/// The layout version of a handoff's bytes. Version 2 carries the keys of
/// the sends each instance made (state layout 7); version 1, which the
/// release before wrote, is still read.
pub const HANDOFF_FORMAT: u32 = 2;

/// The handoff layout of the release before, read as state layout 6.
const HANDOFF_FORMAT_1: u32 = 1;

/// One customer's state as it travels (see the module documentation).
#[derive(Serialize, Deserialize)]
struct Handoff {
    format: u32,
    /// The customer's identities, the one it is shown by first.
    identities: Vec<Identity>,
    /// The customer, its keys in the giver's numbering.
    customer: Customer,
    /// The giver's flow names by key.
    flow_names: Vec<Arc<str>>,
    /// The giver's message names by key.
    message_names: Vec<Arc<str>>,
    /// The bundles of the giver's releases its instances and goal watches
    /// run, by the giver's release number.
    releases: Vec<(u32, Vec<u8>)>,
    /// Its live instances.
    instances: Vec<Instance>,
}

fn decode_err(e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Decode(format!("a customer handed over: {e}"))
}

impl<'b> Machine<'b> {
    /// Takes the customer who holds any of `ids` out of this engine and
    /// returns its state as bytes for [`Machine::take_in`]; `None` when no
    /// customer holds them. The customer's identities stay in the graph
    /// (their calls go elsewhere from now on), its timers lapse.
    pub fn hand_off(&mut self, ids: &[Identity]) -> Result<Option<Vec<u8>>, CheckpointError> {
        let named: Vec<u32> = ids
            .iter()
            .filter_map(|id| self.customer_known_as(id))
            .map(|c| c.0)
            .collect();
        let Some(c) = named.into_iter().find(|c| self.customers.contains_key(c)) else {
            return Ok(None);
        };
        if !self.page_in(c) {
            return Err(CheckpointError::Decode(format!(
                "cannot read customer {c} back from the store: {}",
                self.page_fault().unwrap_or_default()
            )));
        }
        let display = self.display_id(c);
        let mut identities: Vec<Identity> = ids
            .iter()
            .filter(|id| self.identities.customer_of(id) == Some(CustomerId(c)))
            .cloned()
            .collect();
        // The identity it is shown by first: the taker shows it alike.
        identities.sort_by_key(|id| match id {
            Identity::User(_) => 0,
            Identity::Anonymous(s) | Identity::Email(s) if *s == display => 1,
            _ => 2,
        });
        let Some(mut customer) = self.customers.remove(&c) else {
            return Ok(None);
        };
        let mut instances = Vec::new();
        for id in customer.instances.iter().collect::<Vec<_>>() {
            if let Some(inst) = self.instances.take(id) {
                self.free.push(id);
                instances.push(inst);
            }
        }
        customer.instances = Default::default();
        let mut used: Vec<u32> = instances.iter().map(|i| i.release).collect();
        used.extend(customer.rare().goals.iter().map(|g| g.release));
        used.sort_unstable();
        used.dedup();
        let releases = used
            .into_iter()
            .filter_map(|r| {
                let release = self.releases.get(r as usize)?;
                Some((r, release.bundle.encode()))
            })
            .collect();
        let handoff = Handoff {
            format: HANDOFF_FORMAT,
            identities,
            customer,
            flow_names: self.flow_names.clone(),
            message_names: self.message_names.clone(),
            releases,
            instances,
        };
        postcard::to_allocvec(&handoff)
            .map(Some)
            .map_err(|e| CheckpointError::Decode(e.to_string()))
    }

    /// Puts a customer given by [`Machine::hand_off`] (of an engine running
    /// the same code) into this engine, in this engine's numbering, and
    /// sets its timers again. A release its instances run that this engine
    /// does not have is decoded into `arena` and kept as an older release.
    /// When some of its identities are known here already (a call for it
    /// that overtook the handoff), it joins that customer, unrecorded: one
    /// engine would have held them as one. On error the
    /// engine is unchanged.
    pub fn take_in(&mut self, bytes: &[u8], arena: &'b Bundles) -> Result<(), CheckpointError> {
        let format: u32 = postcard::take_from_bytes(bytes)
            .map(|(f, _)| f)
            .map_err(decode_err)?;
        let h: Handoff = match format {
            HANDOFF_FORMAT => postcard::from_bytes(bytes).map_err(decode_err)?,
            HANDOFF_FORMAT_1 => {
                let _layout = layout::at(ROWS_FORMAT_6);
                postcard::from_bytes(bytes).map_err(decode_err)?
            }
            found => return Err(CheckpointError::Format { found }),
        };
        let Some((first, others)) = h.identities.split_first() else {
            return Err(decode_err("it names no identity"));
        };
        // Releases first: the only step that can fail. Each carried release
        // is one of this engine's (its bundle encodes the same) or new here.
        let mine: Vec<Vec<u8>> = self.releases.iter().map(|r| r.bundle.encode()).collect();
        let mut carried: Vec<(u32, Result<u32, Bundle>)> = Vec::with_capacity(h.releases.len());
        for (r, encoded) in &h.releases {
            let found =
                match mine.iter().position(|m| m == encoded) {
                    Some(p) => Ok(p as u32),
                    None => Err(Bundle::decode(encoded)
                        .map_err(|e| CheckpointError::Bundle(e.to_string()))?),
                };
            carried.push((*r, found));
        }
        for inst in &h.instances {
            if !h.releases.iter().any(|(r, _)| *r == inst.release) {
                return Err(decode_err("an instance runs a release it does not carry"));
            }
        }
        // Nothing fails from here on.
        self.new_input();
        // New releases go in first, each just before the newest: that moves
        // the newest alone, which the found ones then account for.
        let newest = self.current();
        let mut release_of: HashMap<u32, u32> = HashMap::new();
        let mut found = Vec::new();
        for (r, c) in carried {
            match c {
                Ok(p) => found.push((r, p)),
                Err(b) => {
                    let here = self.adopt_older_release(arena.alloc(b));
                    release_of.insert(r, here);
                }
            }
        }
        for (r, p) in found {
            release_of.insert(r, if p == newest { self.current() } else { p });
        }
        let flow_key = |m: &mut Self, k: u32| -> u32 {
            match h.flow_names.get(k as usize) {
                Some(name) => intern(&mut m.flow_names, &mut m.flow_keys, name),
                None => k,
            }
        };
        let message_key = |m: &mut Self, k: u32| -> u32 {
            match h.message_names.get(k as usize) {
                Some(name) => intern(&mut m.message_names, &mut m.message_keys, name),
                None => k,
            }
        };
        let mut customer = h.customer;
        for mem in &mut customer.flows {
            mem.key = flow_key(self, mem.key);
        }
        for s in &mut customer.sends {
            s.flow = flow_key(self, s.flow);
            s.message = message_key(self, s.message);
        }
        if let Some(rare) = customer.rare_if() {
            for g in &mut rare.goals {
                g.release = release_of.get(&g.release).copied().unwrap_or(g.release);
            }
        }
        // Arrival numbers are this engine's: renumbered in order, so the
        // history keeps its order and instances still know their trigger.
        let mut seq_of: HashMap<u64, u64> = HashMap::new();
        for e in &mut customer.events {
            self.seq += 1;
            seq_of.insert(e.seq, self.seq);
            e.seq = self.seq;
        }
        self.newest_changed();

        // Its identities: the first names the customer's node here.
        for id in &h.identities {
            self.identity_in(id);
        }
        let mut root = self.identities.customer(first.clone());
        for id in others {
            match self.identities.join(first.clone(), id.clone()) {
                Join::Same(c) => root = c,
                Join::Merged { kept, absorbed } => {
                    // The absorbed customer may be stored (let go or frozen):
                    // read back first, as a merge does (a fault stops the host).
                    if self.page_in(absorbed.0)
                        && let Some(other) = self.customers.remove(&absorbed.0)
                    {
                        self.merge_customer(kept, other, false);
                    }
                    root = kept;
                }
                Join::Refused { .. } => {}
            }
        }
        let c = root.0;
        let mut slots = Vec::with_capacity(h.instances.len());
        for mut inst in h.instances {
            inst.release = release_of
                .get(&inst.release)
                .copied()
                .unwrap_or(inst.release);
            inst.customer = c;
            inst.trigger_seq = seq_of.get(&inst.trigger_seq).copied().unwrap_or(0);
            let state = inst.state();
            let id = self.alloc(inst);
            customer.instances.push(id);
            slots.push((id, state));
        }
        let keys: Vec<u32> = customer.flows.iter().map(|m| m.key).collect();
        if self.customers.contains_key(&c) {
            // Known here already (a call for it that overtook the
            // handoff): the two parts come together.
            self.merge_customer(root, customer, false);
        } else {
            customer.key = self.display_id(root.0).into();
            self.customers.insert(c, customer);
            self.rearm_joined(c, &keys);
            self.arm_schedules(c);
        }
        for (id, state) in slots {
            let due = match &state {
                Waiting::Running => self.now,
                Waiting::Sleep { until } | Waiting::Send { until, .. } => *until,
                Waiting::Event { deadline, .. } => *deadline,
            };
            self.park(id, state, due);
        }
        self.settle();
        Ok(())
    }

    /// Keeps `bundle` as a release older than the newest, for instances
    /// handed over from an engine that still runs it; returns its number.
    fn adopt_older_release(&mut self, bundle: &'b Bundle) -> u32 {
        self.note_reads(bundle);
        let mut release = self.release_of(bundle);
        // Only the newest release starts instances.
        release.triggered_by.clear();
        let newest = self.current();
        self.releases.insert(newest as usize, release);
        // What named the newest release names it at its new place.
        for id in 0..self.instances.len() as u32 {
            if self.instances.get(id).is_some_and(|i| i.release == newest)
                && let Some(inst) = self.instances.get_mut(id)
            {
                inst.release = newest + 1;
            }
        }
        let watching: Vec<u32> = self
            .customers
            .iter()
            .filter(|(_, c)| c.rare().goals.iter().any(|g| g.release == newest))
            .map(|(n, _)| n)
            .collect();
        for n in watching {
            if let Some(rare) = self.customers.get_mut(&n).and_then(|c| c.rare_if()) {
                for g in &mut rare.goals {
                    if g.release == newest {
                        g.release = newest + 1;
                    }
                }
            }
        }
        self.releases_changed = true;
        self.newest_changed();
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::{apply, sent_keys, sent_then_waiting};
    use crate::engine::{Config, Engine, MemorySink};

    /// An engine whose one customer, `u0`, has an instance that sent once
    /// and waits a day before it sends again.
    fn sent_then_waiting_in(bundle: &Bundle) -> Engine<'_, MemorySink> {
        let mut engine = Engine::new(bundle, MemorySink::default(), Config::default(), i64::MIN);
        apply(&mut engine, &sent_then_waiting().1);
        engine
    }

    #[test]
    fn an_instance_handed_over_takes_its_sends_and_one_of_layout_1_reads_without() {
        let (bundle, _) = sent_then_waiting();
        let arena = Bundles::new();
        let who = [Identity::User("u0".into())];
        let mut giver = sent_then_waiting_in(&bundle);
        let made = sent_keys(&giver);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].len(), 1);
        let bytes = giver.hand_off(&who).unwrap().unwrap();
        let mut taker = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        taker.take_in(&bytes, &arena).unwrap();
        assert_eq!(sent_keys(&taker), made);

        // As the release before wrote it: no keys with the instances.
        let mut giver = sent_then_waiting_in(&bundle);
        let old = {
            let _layout = layout::at(ROWS_FORMAT_6);
            let mut bytes = giver.hand_off(&who).unwrap().unwrap();
            assert_eq!(bytes[0], HANDOFF_FORMAT as u8);
            bytes[0] = HANDOFF_FORMAT_1 as u8;
            bytes
        };
        let mut taker = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        taker.take_in(&old, &arena).unwrap();
        assert_eq!(sent_keys(&taker), [Vec::<u128>::new()]);
        taker.drain();
        assert_eq!(taker.sink().outbox.len(), 1, "the second send");
    }
}
