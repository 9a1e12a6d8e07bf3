//! The ONNX importer on arbitrary bytes (seeded with the committed fixture models): decode
//! the protobuf with tract, then `import_proto`. Any `Err` is fine; a panic is a bug.
#![no_main]

use kinglet_quantizer::import::import_proto;
use libfuzzer_sys::fuzz_target;
use tract_onnx::prelude::Framework;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tract_onnx::onnx().proto_model_for_read(&mut &data[..]) else {
        return;
    };
    if let Err(e) = import_proto(&model, None, None) {
        // Models with a dynamic dimension need a shape: try the fixtures' usual one.
        if format!("{e:#}").contains("dynamic") {
            let _ = import_proto(&model, None, Some(&[1, 20, 8]));
        }
    }
});
