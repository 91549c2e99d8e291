//! Token scopes: which repositories and actions a request needs.

use std::fmt;

/// The access a request needs, e.g. push on the destination plus pull on mount sources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scope {
    /// `repository:NAME:ACTIONS` entries, sorted, without duplicates.
    entries: Vec<String>,
}

impl Scope {
    /// Pull access to `repository`.
    pub fn pull(repository: &str) -> Scope {
        Scope::default().with_pull(repository)
    }

    /// Push (and pull, which a push needs) access to `repository`.
    pub fn push(repository: &str) -> Scope {
        Scope::default().with_entry(format!("repository:{repository}:pull,push"))
    }

    /// Adds pull access to `repository` (a cross-repository mount source).
    pub fn with_pull(self, repository: &str) -> Scope {
        self.with_entry(format!("repository:{repository}:pull"))
    }

    fn with_entry(mut self, entry: String) -> Scope {
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
            self.entries.sort();
        }
        self
    }

    /// What the scope is for, in words: `push to team/app` or `pull from team/app`
    /// (authentication errors are about a repository, not one request).
    pub fn summary(&self) -> String {
        let parse = |entry: &String| {
            let rest = entry.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some((name.to_owned(), actions.contains("push")))
        };
        let parsed: Vec<(String, bool)> = self.entries.iter().filter_map(parse).collect();
        if let Some((name, _)) = parsed.iter().find(|(_, push)| *push) {
            format!("push to {name}")
        } else if let Some((name, _)) = parsed.first() {
            format!("pull from {name}")
        } else {
            "login".to_owned()
        }
    }

    /// The `scope` values to send to a token endpoint.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_with_mount_sources_is_one_sorted_scope() {
        let a = Scope::push("team/app")
            .with_pull("base/img")
            .with_pull("base/img");
        let b = Scope::pull("base/img").with_entry("repository:team/app:pull,push".into());
        assert_eq!(a, b);
        assert_eq!(a.summary(), "push to team/app");
        assert_eq!(Scope::pull("x/y").summary(), "pull from x/y");
        assert_eq!(
            a.to_string(),
            "repository:base/img:pull repository:team/app:pull,push"
        );
    }
}
