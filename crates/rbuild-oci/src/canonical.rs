//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace.

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` as canonical JSON: keys of every object sorted (bytewise), no whitespace
/// between tokens, strings escaped as `serde_json` does (only `"`, `\` and control characters).
/// The output depends only on the value, never on field order or on `serde_json` features that
/// another crate might enable.
///
/// # Panics
/// Only if `value`'s `Serialize` implementation fails or produces a map with non-string keys,
/// which none of this crate's types do.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("value serializes to JSON");
    let mut out = Vec::new();
    write_value(&value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to memory cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_whitespace_gone() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": "x\ny"}], "a": true, "B": 1.5 }"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"B":1.5,"a":true,"b":[1,{"a":"x\ny","z":null}]}"#
        );
    }
}
