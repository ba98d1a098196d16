//! The engine keeps every instant in milliseconds since the Unix epoch, so
//! that calls within one second keep their order and a `wait 30s` lasts 30
//! seconds to the millisecond; the language's own instants and durations are
//! whole seconds. These convert between the two.

/// Seconds of the language as the engine's milliseconds; saturating, so a
/// far-future value stays far rather than wrapping.
pub const fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// The whole second of the language that an engine instant falls in.
pub const fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_before_the_epoch_too() {
        assert_eq!((secs(1_999), secs(2_000), secs(-1)), (1, 2, -1));
        assert_eq!(ms(30), 30_000);
        assert_eq!(ms(i64::MAX / 10), i64::MAX);
    }
}
