//! "Did you mean" suggestions for misspelled names.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name || c.is_empty() {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(name) {
            0
        } else {
            strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase())
        };
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let names = ["order_completed", "order_shipped", "checkout_started"];
        assert_eq!(
            did_you_mean("order_complted", names),
            Some("order_completed")
        );
        assert_eq!(
            did_you_mean("Order_Completed", names),
            Some("order_completed")
        );
        assert_eq!(did_you_mean("refund", names), None);
        assert_eq!(did_you_mean("x", ["y", "xy"]), Some("xy"));
        assert_eq!(did_you_mean("abc", Vec::<&str>::new()), None);
    }
}
