//! Proxy build args (`--build-arg HTTP_PROXY=...` and the like) as the environment of every
//! RUN step. As BuildKit's exec op does with its `ProxyEnv`, each is given in both spellings
//! (`HTTP_PROXY` and `http_proxy`), whichever one the user passed; none of them is ever part
//! of a history entry, the config or a cache key.

use rbuild_plan::PROXY_ARGS;
use std::collections::BTreeMap;

/// `NAME=value` pairs for the proxy args among `build_args`, upper case first.
pub(crate) fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut env = Vec::new();
    for lower in PROXY_ARGS {
        let upper = lower.to_ascii_uppercase();
        let value = build_args
            .get(&upper)
            .or_else(|| build_args.get(lower))
            .or_else(|| {
                build_args
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(lower))
                    .map(|(_, v)| v)
            });
        if let Some(value) = value {
            env.push(format!("{upper}={value}"));
            env.push(format!("{lower}={value}"));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_each_given_proxy_and_nothing_else() {
        let args = BTreeMap::from([
            ("https_proxy".to_string(), "http://p:1".to_string()),
            ("No_Proxy".to_string(), "localhost".to_string()),
            ("VERSION".to_string(), "1".to_string()),
        ]);
        assert_eq!(
            proxy_env(&args),
            vec![
                "HTTPS_PROXY=http://p:1",
                "https_proxy=http://p:1",
                "NO_PROXY=localhost",
                "no_proxy=localhost",
            ]
        );
    }
}
