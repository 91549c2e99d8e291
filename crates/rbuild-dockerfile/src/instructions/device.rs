//! `RUN --device=...` values, parsed as BuildKit's `ParseDevice`.

use super::mount::csv_fields;
use crate::model::Device;
use crate::suggest;

/// Parses one `--device` value: a name (first bare field or `name=`) and `required`.
pub(crate) fn parse_device(value: &str) -> Result<Device, String> {
    let fields = csv_fields(value, "devices")?;
    let mut d = Device {
        name: String::new(),
        required: false,
    };
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            if key == "required" {
                d.required = true;
            } else if d.name.is_empty() {
                d.name = field;
            } else {
                return Err(format!("invalid field '{field}' must be a key=value pair"));
            }
            continue;
        };
        match key.as_str() {
            "name" => {
                if !d.name.is_empty() {
                    return Err(format!("device name already set to {}", d.name));
                }
                d.name = val;
            }
            "required" => {
                d.required = match val.as_str() {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                    _ => return Err(format!("invalid value for {key}: {val}")),
                }
            }
            _ if d.name.is_empty() => d.name = field,
            _ => {
                return Err(suggest::wrap(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    &["name", "required"],
                    true,
                ))
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices() {
        let d = parse_device("vendor.com/gpu=all,required").unwrap();
        assert_eq!((d.name.as_str(), d.required), ("vendor.com/gpu=all", true));
        let d = parse_device("name=nvidia.com/gpu=0,required=false").unwrap();
        assert_eq!((d.name.as_str(), d.required), ("nvidia.com/gpu=0", false));
        assert_eq!(
            parse_device("a,b").unwrap_err(),
            "invalid field 'b' must be a key=value pair"
        );
        assert_eq!(
            parse_device("a,name=b").unwrap_err(),
            "device name already set to a"
        );
        assert_eq!(
            parse_device("a,requird=true").unwrap_err(),
            "unexpected key 'requird' in 'requird=true' (did you mean required?)"
        );
    }
}
