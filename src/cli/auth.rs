//! `herald auth`: edit the auth file of principals, tokens and permissions.
//!
//! CLI layer over [`crate::auth::edit`]. The file is named by `--file` (or
//! `HERALD_AUTH__FILE`, the variable of the server's `auth.file`). A token
//! is printed once, on stdout; only its hash is stored. A running server
//! picks changes up within `auth.reload_interval`, or at once on SIGHUP.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::client::{Table, print_json, print_line};
use crate::auth::edit::{self, Editor, NewRule};

/// The auth file flag of every `herald auth` command.
#[derive(Debug, Clone, Args)]
pub struct FileArg {
    /// The auth file (created by the first `herald auth add`).
    #[arg(long, env = "HERALD_AUTH__FILE", value_name = "FILE")]
    pub file: PathBuf,
}

/// `herald auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Add a principal (a service, a person, or a client certificate's subject).
    Add {
        /// Its name; for mutual TLS, the certificate's DNS/URI/email SAN or CN.
        principal: String,
        /// Allow everything, server-wide calls included.
        #[arg(long)]
        admin: bool,
        /// A rule ACTIONS:TOPICS, e.g. `publish,consume:orders,orders.>` (repeatable).
        /// Actions: publish, consume, manage, dead_letters. Topics: names or
        /// patterns (`*` one segment, `#` any number, trailing `>` one or more).
        #[arg(long, value_name = "ACTIONS:TOPICS", value_parser = parse_rule)]
        allow: Vec<NewRule>,
        #[command(flatten)]
        file: FileArg,
    },
    /// Remove a principal and its tokens.
    Remove {
        /// Its name.
        principal: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// Create or revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List principals, their rules and token ids (never the tokens).
    List {
        #[command(flatten)]
        file: FileArg,
    },
}

/// `herald auth token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a principal and print it (once: only its hash is kept).
    Create {
        /// The principal.
        principal: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The principal.
        principal: String,
        /// The token id (the 12 hex digits after `hrd_`).
        id: String,
        #[command(flatten)]
        file: FileArg,
    },
}

/// Parses `ACTIONS:TOPICS`.
///
/// # Errors
/// No `:`, or an empty side.
pub fn parse_rule(text: &str) -> Result<NewRule, String> {
    let (actions, topics) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not ACTIONS:TOPICS (e.g. publish,consume:orders.>)"))?;
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let rule = NewRule {
        actions: list(actions),
        topics: list(topics),
    };
    if rule.actions.is_empty() || rule.topics.is_empty() {
        return Err(format!("{text:?} needs at least one action and one topic"));
    }
    Ok(rule)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the auth file {} (`herald auth add` creates it)",
            path.display()
        )
    })
}

/// Applies `change` to the file and saves it.
fn edit<T>(
    path: &Path,
    create: bool,
    change: impl FnOnce(&mut Editor) -> Result<T, String>,
) -> Result<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
            edit::new_file().map_err(|e| anyhow!(e))?
        }
        Err(_) => read(path)?,
    };
    let mut editor = Editor::open(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let out = change(&mut editor).map_err(|e| anyhow!(e))?;
    edit::save(path, &editor.text()).map_err(|e| anyhow!(e))?;
    Ok(out)
}

#[derive(Serialize)]
struct PrincipalView {
    name: String,
    admin: bool,
    rules: Vec<RuleView>,
    tokens: Vec<String>,
}

#[derive(Serialize)]
struct RuleView {
    topics: Vec<String>,
    actions: Vec<String>,
}

/// Runs `herald auth …`.
///
/// # Errors
/// The file cannot be read, edited or written, or the change is refused
/// (unknown principal, bad rule…).
pub async fn run(command: AuthCommand, json: bool) -> Result<()> {
    match command {
        AuthCommand::Add {
            principal,
            admin,
            allow,
            file,
        } => {
            if !admin && allow.is_empty() {
                eprintln!("note: {principal:?} gets no permission (add --allow or --admin)");
            }
            edit(&file.file, true, |e| {
                e.add_principal(&principal, admin, &allow)
            })?;
            eprintln!("added principal {principal:?} to {}", file.file.display());
        }
        AuthCommand::Remove { principal, file } => {
            edit(&file.file, false, |e| e.remove_principal(&principal))?;
            eprintln!("removed principal {principal:?} and its tokens");
        }
        AuthCommand::Token(TokenCommand::Create { principal, file }) => {
            let created =
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let token = edit(&file.file, false, |e| e.add_token(&principal, &created))?;
            if json {
                print_json(&serde_json::json!({
                    "principal": principal, "id": token.id, "token": token.token,
                }))?;
            } else {
                print_line(&token.token)?;
            }
            eprintln!(
                "token {} of {principal:?}: shown once, only its hash is stored; the server \
                 accepts it after its next reload of the file",
                token.id
            );
        }
        AuthCommand::Token(TokenCommand::Revoke {
            principal,
            id,
            file,
        }) => {
            edit(&file.file, false, |e| e.revoke_token(&principal, &id))?;
            eprintln!("revoked token {id} of {principal:?}");
        }
        AuthCommand::List { file } => list(&file.file, json)?,
    }
    Ok(())
}

fn list(path: &Path, json: bool) -> Result<()> {
    let policy =
        crate::auth::parse_file(&read(path)?, 1).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut views: Vec<PrincipalView> = policy
        .principals()
        .map(|p| PrincipalView {
            name: p.name.clone(),
            admin: p.admin,
            rules: p
                .rules
                .iter()
                .map(|r| RuleView {
                    topics: r.patterns.clone(),
                    actions: crate::auth::Action::ALL
                        .into_iter()
                        .filter(|a| r.actions.contains(*a))
                        .map(|a| a.name().to_string())
                        .collect(),
                })
                .collect(),
            tokens: Vec::new(),
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    for (id, name) in policy.token_ids() {
        if let Some(v) = views.iter_mut().find(|v| v.name == name) {
            v.tokens.push(id.to_string());
        }
    }
    for v in &mut views {
        v.tokens.sort();
    }
    if json {
        return print_json(&views);
    }
    if views.is_empty() {
        eprintln!(
            "no principal in {} (add one with `herald auth add`)",
            path.display()
        );
        return Ok(());
    }
    let mut table = Table::new(&["PRINCIPAL", "ADMIN", "RULES", "TOKENS"]);
    for v in views {
        let rules = v
            .rules
            .iter()
            .map(|r| format!("{}:{}", r.actions.join(","), r.topics.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        table.push(vec![
            v.name,
            if v.admin { "yes".into() } else { "-".into() },
            if rules.is_empty() { "-".into() } else { rules },
            if v.tokens.is_empty() {
                "-".into()
            } else {
                v.tokens.join(",")
            },
        ]);
    }
    table.print()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_flags() {
        let r = parse_rule("publish, consume:orders,orders.>").unwrap();
        assert_eq!(r.actions, ["publish", "consume"]);
        assert_eq!(r.topics, ["orders", "orders.>"]);
        assert!(parse_rule("publish").is_err());
        assert!(parse_rule(":orders").is_err());
        assert!(parse_rule("publish:").is_err());
    }
}
