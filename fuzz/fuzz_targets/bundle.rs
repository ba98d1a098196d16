//! Bundle decoding (the nudge-bytecode wire format, as stored): any bytes
//! are refused with a reason or decoded; what decodes encodes to bytes that
//! decode to the same bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nudge_bytecode::Bundle;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(bundle) = Bundle::decode(bytes) {
        let encoded = bundle.encode();
        let again = Bundle::decode(&encoded).expect("an encoded bundle decodes");
        assert_eq!(again.encode(), encoded, "encoding is not stable");
    }
});
