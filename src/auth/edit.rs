//! The changes `herald auth` makes to an auth file: add and remove
//! principals, create and revoke tokens.
//!
//! Edge layer. Edits go through `toml_edit`, so comments and layout written
//! by hand survive; every result is parsed as the server would parse it
//! before it is written, and it is written atomically (a temporary file
//! renamed over the old one), so a running server never reads half a file.

use std::io::Write as _;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::file::{check_principal_name, compile_topics, parse_actions};
use super::token::{self, KEY_LEN, NewToken};

/// The text of a new auth file: a fresh token key and no principal.
///
/// # Errors
/// The OS random source failed.
pub fn new_file() -> Result<String, String> {
    let key = token::hex(&token::random::<KEY_LEN>()?);
    Ok(format!(
        "# Herald principals, token hashes and permissions (see the README, section Security).\n\
         # Edit by hand or with `herald auth`; the server reloads it when it changes.\n\
         \n\
         # Key of the token hashes (HMAC-SHA256). Changing it invalidates every token.\n\
         token_key = \"{key}\"\n"
    ))
}

/// An auth file being edited.
#[derive(Debug)]
pub struct Editor {
    doc: DocumentMut,
}

/// A rule to add: topic patterns and action names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    /// Topic patterns.
    pub topics: Vec<String>,
    /// Action names.
    pub actions: Vec<String>,
}

impl Editor {
    /// Opens the text of an auth file for editing.
    ///
    /// # Errors
    /// The text is not TOML.
    pub fn open(text: &str) -> Result<Editor, String> {
        let doc = text.parse::<DocumentMut>().map_err(|e| e.to_string())?;
        Ok(Editor { doc })
    }

    fn principals(&mut self) -> Result<&mut Table, String> {
        let item = self.doc.entry("principals").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        item.as_table_mut()
            .ok_or_else(|| "`principals` is not a table".to_string())
    }

    fn principal(&mut self, name: &str) -> Result<&mut Table, String> {
        self.principals()?
            .get_mut(name)
            .and_then(Item::as_table_mut)
            .ok_or_else(|| format!("principal {name:?} does not exist"))
    }

    /// Adds a principal, admin or with `rules`.
    ///
    /// # Errors
    /// It exists already, or its name or a rule is not valid.
    pub fn add_principal(
        &mut self,
        name: &str,
        admin: bool,
        rules: &[NewRule],
    ) -> Result<(), String> {
        check_principal_name(name)?;
        for (i, r) in rules.iter().enumerate() {
            compile_topics(&r.topics).map_err(|e| format!("rule {}: {e}", i + 1))?;
            parse_actions(&r.actions).map_err(|e| format!("rule {}: {e}", i + 1))?;
        }
        let principals = self.principals()?;
        if principals.contains_key(name) {
            return Err(format!("principal {name:?} exists already"));
        }
        let mut table = Table::new();
        if admin {
            table.insert("admin", value(true));
        }
        if !rules.is_empty() {
            let mut list = ArrayOfTables::new();
            for r in rules {
                let mut t = Table::new();
                t.insert("topics", value(strings(&r.topics)));
                t.insert("actions", value(strings(&r.actions)));
                list.push(t);
            }
            table.insert("rules", Item::ArrayOfTables(list));
        }
        principals.insert(name, Item::Table(table));
        Ok(())
    }

    /// Removes a principal and its tokens.
    ///
    /// # Errors
    /// It does not exist.
    pub fn remove_principal(&mut self, name: &str) -> Result<(), String> {
        self.principals()?
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| format!("principal {name:?} does not exist"))
    }

    /// Makes a token for `principal` and stores its hash; `created` is the
    /// time to note beside it.
    ///
    /// # Errors
    /// The principal does not exist, the file has no valid `token_key`, or
    /// the OS random source failed.
    pub fn add_token(&mut self, principal: &str, created: &str) -> Result<NewToken, String> {
        let key = self
            .doc
            .get("token_key")
            .and_then(Item::as_str)
            .and_then(token::unhex::<KEY_LEN>)
            .ok_or("the file has no valid token_key (64 hex digits)")?;
        let new = token::generate()?;
        let hash = token::hex(&token::hash(&token::key(&key), &new.token));
        let table = self.principal(principal)?;
        let entry = table
            .entry("tokens")
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
        match entry {
            Item::ArrayOfTables(list) => {
                let mut t = Table::new();
                t.insert("id", value(new.id.as_str()));
                t.insert("hash", value(hash));
                t.insert("created", value(created));
                list.push(t);
            }
            Item::Value(toml_edit::Value::Array(list)) => {
                let mut t = toml_edit::InlineTable::new();
                t.insert("id", new.id.as_str().into());
                t.insert("hash", hash.into());
                t.insert("created", created.into());
                list.push(t);
            }
            _ => return Err(format!("tokens of principal {principal:?} is not a list")),
        }
        Ok(new)
    }

    /// Removes the token `id` of `principal`.
    ///
    /// # Errors
    /// The principal or the token does not exist.
    pub fn revoke_token(&mut self, principal: &str, id: &str) -> Result<(), String> {
        let table = self.principal(principal)?;
        let missing = || format!("principal {principal:?} has no token {id:?}");
        let same = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case(id));
        match table.get_mut("tokens") {
            Some(Item::ArrayOfTables(list)) => {
                let at = list
                    .iter()
                    .position(|t| same(t.get("id").and_then(Item::as_str)))
                    .ok_or_else(missing)?;
                list.remove(at);
            }
            Some(Item::Value(toml_edit::Value::Array(list))) => {
                let at = list
                    .iter()
                    .position(|v| {
                        same(
                            v.as_inline_table()
                                .and_then(|t| t.get("id"))
                                .and_then(|v| v.as_str()),
                        )
                    })
                    .ok_or_else(missing)?;
                list.remove(at);
            }
            _ => return Err(missing()),
        }
        Ok(())
    }

    /// The edited text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

fn strings(items: &[String]) -> toml_edit::Array {
    items.iter().map(String::as_str).collect()
}

/// Writes `text` to `path` atomically, after checking it parses as an auth
/// file. A new file is readable by its owner only; an existing file keeps
/// its permissions.
///
/// # Errors
/// The text is not a valid auth file, or writing failed.
pub fn save(path: &Path, text: &str) -> Result<(), String> {
    super::file::parse(text, 1).map_err(|e| format!("refusing to write an invalid file: {e}"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("creating a temporary file in {}: {e}", dir.display()))?;
    let permissions = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o600),
    };
    let write = |tmp: &mut tempfile::NamedTempFile| -> std::io::Result<()> {
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().set_permissions(permissions)?;
        tmp.as_file().sync_all()
    };
    write(&mut tmp).map_err(|e| format!("writing {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("replacing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Action, file::parse};
    use super::*;

    #[test]
    fn edits_keep_comments_and_give_working_tokens() {
        let text = format!("{}\n# ops team, ask #infra\n", new_file().unwrap());
        let mut ed = Editor::open(&text).unwrap();
        ed.add_principal(
            "orders-service",
            false,
            &[NewRule {
                topics: vec!["orders.>".into()],
                actions: vec!["publish".into()],
            }],
        )
        .unwrap();
        ed.add_principal("spiffe://example.org/ops", true, &[])
            .unwrap();
        assert!(ed.add_principal("orders-service", true, &[]).is_err());
        let t1 = ed
            .add_token("orders-service", "2026-01-31T12:00:00Z")
            .unwrap();
        let t2 = ed
            .add_token("orders-service", "2026-01-31T12:00:01Z")
            .unwrap();
        assert!(ed.add_token("nobody", "now").is_err());
        let out = ed.text();
        assert!(out.contains("# ops team, ask #infra"), "{out}");
        assert!(!out.contains(&t1.token), "the token itself is never stored");
        let policy = parse(&out, 10).unwrap();
        let p = policy.authenticate(&t1.token).unwrap();
        assert!(p.may(Action::Publish, "orders.eu") && !p.admin);
        assert!(policy.authenticate(&t2.token).is_ok());
        assert!(policy.principal("spiffe://example.org/ops").admin);

        let mut ed = Editor::open(&out).unwrap();
        ed.revoke_token("orders-service", &t1.id.to_uppercase())
            .unwrap();
        assert!(ed.revoke_token("orders-service", &t1.id).is_err());
        let policy = parse(&ed.text(), 10).unwrap();
        assert!(policy.authenticate(&t1.token).is_err());
        assert!(policy.authenticate(&t2.token).is_ok());
        ed.remove_principal("orders-service").unwrap();
        assert!(ed.remove_principal("orders-service").is_err());
        let policy = parse(&ed.text(), 10).unwrap();
        assert!(policy.authenticate(&t2.token).is_err());
    }

    #[test]
    fn bad_rules_and_bad_files_are_refused() {
        let mut ed = Editor::open(&new_file().unwrap()).unwrap();
        let bad = NewRule {
            topics: vec!["a..b".into()],
            actions: vec!["publish".into()],
        };
        assert!(ed.add_principal("p", false, &[bad]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        assert!(save(&path, "token_key = \"short\"").is_err());
        assert!(!path.exists());
        save(&path, &ed.text()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn inline_token_lists_written_by_hand_are_edited_in_place() {
        let text = format!("{}[principals.a]\ntokens = []\n", new_file().unwrap());
        let mut ed = Editor::open(&text).unwrap();
        let t = ed.add_token("a", "now").unwrap();
        let policy = parse(&ed.text(), 10).unwrap();
        assert_eq!(policy.authenticate(&t.token).unwrap().name, "a");
        ed.revoke_token("a", &t.id).unwrap();
        assert!(
            parse(&ed.text(), 10)
                .unwrap()
                .authenticate(&t.token)
                .is_err()
        );
    }
}
