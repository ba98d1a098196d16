//! Customers' rows laid out by older tables: a deploy that changes the
//! schemas moves the customers in memory onto the new tables and leaves
//! every stored row as it is; a row is moved when it is next read.
//!
//! So a deploy that adds a trait to a store of a million customers reads
//! none of them, and its checkpoint writes only what was in memory: the
//! cost of moving a customer is paid by the call or timer that next needs
//! it, one customer at a time, within the budget of customers in memory.
//!
//! Invariant: a customer's row ends with the generation of the tables it
//! was laid out by (rows of layouts before 8 end without one and are of
//! generation 0); generation `g` moves onto `g + 1` by `steps[g]`, and the
//! newest generation is the number of steps. Every step is kept: a row is
//! rewritten only when its customer changes, so old rows may be read at
//! any later time. A step is the size of the schemas' index tables (a few
//! kilobytes), one per deploy that changed them.

use serde::{Deserialize, Serialize};

use super::checkpoint::layout;
use super::customer::Customer;
use super::evolve::Migration;

/// How a stored row of each generation of tables moves onto the newest
/// (see the module documentation).
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Tables {
    /// `steps[g]` moves a customer from generation `g` onto `g + 1`.
    steps: Vec<Migration>,
}

impl Tables {
    /// The generation of the newest tables: what rows written now carry.
    pub(super) fn current(&self) -> u32 {
        self.steps.len() as u32
    }

    /// Notes a deploy that changed the tables: rows of earlier generations
    /// move through `step` after the steps before it.
    pub(super) fn push(&mut self, step: Migration) {
        self.steps.push(step);
    }

    /// Customer `cust`'s row on the newest tables, appended to `buffer`:
    /// its record, then the tables' generation (left out when an earlier
    /// layout is written, which only tests do).
    pub(super) fn encode(
        &self,
        cust: &Customer,
        buffer: Vec<u8>,
    ) -> Result<Vec<u8>, postcard::Error> {
        let buffer = postcard::to_extend(cust, buffer)?;
        if layout::before::<8, _>(&()) {
            return Ok(buffer);
        }
        postcard::to_extend(&self.current(), buffer)
    }

    /// Decodes a customer's row (as of the layout being read, see
    /// [`super::checkpoint::layout`]) and moves it onto the newest tables.
    /// Goal watches whose rule reads something a deploy removed end here
    /// (the deploy's report counts only those of customers in memory).
    pub(super) fn read(&self, row: &[u8]) -> Result<Customer, String> {
        let (mut customer, rest): (Customer, &[u8]) =
            postcard::take_from_bytes(row).map_err(|e| e.to_string())?;
        let generation = if rest.is_empty() {
            0
        } else {
            let (g, tail): (u32, &[u8]) = postcard::take_from_bytes(rest)
                .map_err(|e| format!("the generation of its tables: {e}"))?;
            if !tail.is_empty() {
                return Err(format!("{} bytes after its row", tail.len()));
            }
            g
        };
        let steps = self.steps.get(generation as usize..).ok_or_else(|| {
            format!(
                "it is laid out by tables of generation {generation}, and the newest is {}",
                self.current()
            )
        })?;
        for step in steps {
            step.customer(&mut customer);
        }
        Ok(customer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::checkpoint::{FORMAT, ROWS_FORMAT_7};
    use super::super::fixtures::{
        RowsPager, SENT_THEN_WAITING, apply, rows_of_layout, sent_then_waiting,
    };
    use super::super::{Bundles, Config, Engine, MemorySink};

    #[test]
    fn a_row_of_unknown_tables_or_with_bytes_after_it_is_refused_with_the_reason() {
        let (bundle, _) = sent_then_waiting();
        let tables = super::Tables::default();
        let customer = super::Customer::new(&bundle, "u0".into());
        let row = tables.encode(&customer, Vec::new()).unwrap();
        assert_eq!(&*tables.read(&row).unwrap().key, "u0");
        // Generation 0 is one byte at the end: the row of a later
        // generation than the store knows, then one with bytes after it.
        let mut later = row.clone();
        *later.last_mut().unwrap() = 3;
        assert_eq!(
            tables.read(&later).err().as_deref(),
            Some("it is laid out by tables of generation 3, and the newest is 0")
        );
        let mut longer = row.clone();
        longer.extend([0, 0]);
        assert_eq!(
            tables.read(&longer).err().as_deref(),
            Some("2 bytes after its row")
        );
        assert!(tables.read(&row[..row.len() / 2]).is_err());
    }

    #[test]
    fn rows_of_layout_7_are_of_the_first_tables_and_move_when_read() {
        let (bundle, lines) = sent_then_waiting();
        let v2 = nudge_test_support::build(&[
            ("t.flow", SENT_THEN_WAITING),
            ("tier.flow", "profile {\n  tier: string = \"gold\"\n}\n"),
        ]);
        let arena = Bundles::new();
        let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        apply(&mut engine, &lines);
        let email = engine.profile_field("u0", "email");
        assert!(email.is_some());
        let old = rows_of_layout(&mut engine, ROWS_FORMAT_7);
        let store = std::sync::Arc::new(std::sync::Mutex::new(old.clone()));
        let mut restored = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        restored.set_pager(Box::new(RowsPager(store.clone())));
        restored
            .restore_rows(old.rows_without_customers(), &bundle, &arena)
            .unwrap();
        let report = restored.deploy(&v2, &arena).unwrap();
        assert!(!report.schemas.is_empty());
        let changes = restored.take_changes().unwrap();
        assert_eq!(changes.format, FORMAT);
        assert!(
            changes.customers.is_empty(),
            "the row of layout 7 stays in the store"
        );
        store.lock().unwrap().apply(changes);
        assert_eq!(
            restored.profile_field("u0", "tier"),
            Some(nudge_bytecode::Value::Str("gold".into()))
        );
        assert_eq!(restored.profile_field("u0", "email"), email);
    }
}
