//! `herald dlq list|replay|purge`: a group's dead-letter queue through
//! DeadLetterService.
//!
//! CLI layer.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{
    Context, EventView, Table, human_age, json_time, parse_time, print_json, print_line, truncate,
};
use crate::proto::dead_letter_service_client::DeadLetterServiceClient;
use crate::proto::{self, DeadLetter, DeadLetterFilter};

/// `herald dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List a group's dead letters, newest first, one page at a time.
    List(ListArgs),
    /// Put dead letters back into the same group's queue with attempts reset.
    Replay(ReplayArgs),
    /// Delete dead letters.
    Purge(PurgeArgs),
}

/// The group whose dead letters are meant.
#[derive(Debug, Args)]
pub struct GroupRef {
    /// Topic of the group.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Group name.
    #[arg(long, short = 'g')]
    pub group: String,
}

/// Which dead letters: `--id …` or `--all`, exactly one of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Selection {
    /// Dead-letter id (from `herald dlq list`); repeatable or comma-separated.
    #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Every dead letter of the group (for replay: every one matching the filter flags).
    #[arg(long)]
    pub all: bool,
}

/// Selection of dead letters by type and time.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only these event types (comma-separated or repeated).
    #[arg(long, value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only dead letters made at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<prost_types::Timestamp>,
    /// Only dead letters made before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub until: Option<prost_types::Timestamp>,
}

impl FilterArgs {
    fn to_proto(&self) -> Option<DeadLetterFilter> {
        (!self.types.is_empty() || self.since.is_some() || self.until.is_some()).then(|| {
            DeadLetterFilter {
                types: self.types.clone(),
                start_time: self.since,
                end_time: self.until,
            }
        })
    }
}

/// Flags of `herald dlq list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    group: GroupRef,
    #[command(flatten)]
    filter: FilterArgs,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// Entries per page, at most 1000 [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    page_size: Option<i32>,
    /// Continue after a previous page (the token it printed).
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
}

/// Flags of `herald dlq replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    group: GroupRef,
    #[command(flatten)]
    selection: Selection,
    /// With --all: only dead letters matching these.
    #[command(flatten)]
    filter: FilterArgs,
}

/// Flags of `herald dlq purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    group: GroupRef,
    #[command(flatten)]
    selection: Selection,
}

/// Runs a dlq command.
///
/// # Errors
/// The server is unreachable or refuses the call (UNIMPLEMENTED on servers
/// without dead-letter support).
pub async fn run(ctx: &Context, command: DlqCommand) -> Result<()> {
    if let DlqCommand::Replay(args) = &command {
        anyhow::ensure!(
            args.selection.all || args.filter.to_proto().is_none(),
            "--types, --since and --until select among all dead letters: use them with --all"
        );
    }
    let mut client = DeadLetterServiceClient::new(ctx.connect().await?);
    match command {
        DlqCommand::List(args) => {
            let page = ctx
                .call(client.list_dead_letters(proto::ListDeadLettersRequest {
                    topic: args.group.topic,
                    group: args.group.group,
                    page_size: args.page_size.unwrap_or(0),
                    page_token: args.page_token.unwrap_or_default(),
                    oldest_first: args.oldest_first,
                    filter: args.filter.to_proto(),
                }))
                .await?;
            if ctx.json {
                return print_json(&serde_json::json!({
                    "dead_letters": page.dead_letters.iter().map(DeadLetterView::from).collect::<Vec<_>>(),
                    "next_page_token": page.next_page_token,
                    "total_count": page.total_count,
                }));
            }
            if page.dead_letters.is_empty() {
                return print_line(&format!("no dead letters ({} in all)", page.total_count));
            }
            let mut table = Table::new(&[
                "ID",
                "OFFSET",
                "EVENT ID",
                "TYPE",
                "ATTEMPTS",
                "AGE",
                "LAST REASON",
            ]);
            for d in &page.dead_letters {
                let event = d.event.clone().unwrap_or_default();
                table.push(vec![
                    d.id.clone(),
                    event.offset.to_string(),
                    event.id,
                    truncate(&event.r#type, 24),
                    d.attempts.to_string(),
                    human_age(d.dead_letter_time.as_ref()),
                    truncate(&d.last_reason, 48),
                ]);
            }
            let mut text = table.render();
            text.push_str(&format!(
                "\n\n{} shown, {} in all",
                page.dead_letters.len(),
                page.total_count
            ));
            if !page.next_page_token.is_empty() {
                text.push_str(&format!(
                    "; next page: --page-token {}",
                    page.next_page_token
                ));
            }
            print_line(&text)
        }
        DlqCommand::Replay(args) => {
            let response = ctx
                .call(client.replay_dead_letters(proto::ReplayDeadLettersRequest {
                    topic: args.group.topic,
                    group: args.group.group,
                    ids: args.selection.ids,
                    all: args.selection.all,
                    filter: args.filter.to_proto(),
                }))
                .await?;
            if ctx.json {
                return print_json(&Counts {
                    replayed_count: Some(response.replayed_count),
                    purged_count: None,
                    remaining_count: response.remaining_count,
                });
            }
            print_line(&format!(
                "replayed {} dead letters; {} remain",
                response.replayed_count, response.remaining_count
            ))
        }
        DlqCommand::Purge(args) => {
            let response = ctx
                .call(client.purge_dead_letters(proto::PurgeDeadLettersRequest {
                    topic: args.group.topic,
                    group: args.group.group,
                    ids: args.selection.ids,
                    all: args.selection.all,
                }))
                .await?;
            if ctx.json {
                return print_json(&Counts {
                    replayed_count: None,
                    purged_count: Some(response.purged_count),
                    remaining_count: response.remaining_count,
                });
            }
            print_line(&format!(
                "purged {} dead letters; {} remain",
                response.purged_count, response.remaining_count
            ))
        }
    }
}

/// The outcome of replay or purge in JSON.
#[derive(Debug, Serialize)]
struct Counts {
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_count: Option<u64>,
    remaining_count: u64,
}

/// A dead letter in JSON: the proto's field names, times RFC 3339.
#[derive(Debug, Serialize)]
struct DeadLetterView {
    id: String,
    topic: String,
    group: String,
    attempts: u32,
    last_reason: String,
    first_failure_time: Option<String>,
    last_failure_time: Option<String>,
    dead_letter_time: Option<String>,
    event: Option<EventView>,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(d: &DeadLetter) -> Self {
        DeadLetterView {
            id: d.id.clone(),
            topic: d.topic.clone(),
            group: d.group.clone(),
            attempts: d.attempts,
            last_reason: d.last_reason.clone(),
            first_failure_time: d.first_failure_time.as_ref().map(json_time),
            last_failure_time: d.last_failure_time.as_ref().map(json_time),
            dead_letter_time: d.dead_letter_time.as_ref().map(json_time),
            event: d.event.as_ref().map(EventView::from),
        }
    }
}
