//! Properties of the parsers and the canonical writer over generated inputs.

use proptest::prelude::*;
use rbuild_oci::{canonical_json, Digest, Reference};
use serde_json::Value;

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,5}((\\.|_|__|-{1,2})[a-z0-9]{1,5}){0,2}"
}

fn registry() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "[a-z][a-z0-9-]{0,6}[a-z0-9]\\.(com|io|example)",
        "localhost(:[0-9]{1,5})?",
        "[a-z]{1,8}:[0-9]{1,5}",
    ])
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn references_round_trip(
        registry in registry(),
        path in prop::collection::vec(component(), 1..4),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest_bytes in proptest::option::of(any::<[u8; 32]>()),
    ) {
        // Like Docker, a first component with a '.' is a registry, not a path.
        prop_assume!(registry.is_some() || path.len() == 1 || !path[0].contains('.'));
        let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
        text.push_str(&path.join("/"));
        if let Some(t) = &tag {
            text.push(':');
            text.push_str(t);
        }
        let digest = digest_bytes.map(Digest::from_sha256);
        if let Some(d) = &digest {
            text.push('@');
            text.push_str(d.as_str());
        }
        let r = Reference::parse(&text).unwrap();
        prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r.clone());
        prop_assert_eq!(Reference::parse(&r.familiar()).unwrap(), r.clone());
        prop_assert_eq!(r.digest(), digest.as_ref());
        match (&tag, &digest) {
            (Some(t), _) => prop_assert_eq!(r.tag(), Some(t.as_str())),
            (None, None) => prop_assert_eq!(r.tag(), Some("latest")),
            (None, Some(_)) => prop_assert_eq!(r.tag(), None),
        }
    }

    #[test]
    fn sha256_digests_round_trip(bytes in any::<[u8; 32]>()) {
        let d = Digest::from_sha256(bytes);
        prop_assert_eq!(Digest::parse(d.as_str()).unwrap(), d.clone());
        prop_assert_eq!(d.encoded().len(), 64);
    }

    #[test]
    fn canonical_json_is_a_fixed_point(v in json_value()) {
        let once = canonical_json(&v);
        let back: Value = serde_json::from_slice(&once).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(canonical_json(&back), once);
    }
}
