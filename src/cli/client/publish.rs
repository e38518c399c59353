//! `herald publish`: one event from flags (PublisherService.Publish), or JSON
//! lines from stdin in pipelined batches (PublisherService.PublishStream).
//!
//! CLI layer.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Context, Table, base64_decode, code_name, parse_key_value, parse_time, print_json};
use crate::proto::publisher_service_client::PublisherServiceClient;
use crate::proto::{self, PublishResult, PublishStreamRequest};

/// Most events per request when reading stdin.
const BATCH: usize = 500;
/// Requests queued for the stream ahead of the server's answers.
const PIPELINE: usize = 8;
/// A partial batch is sent once stdin has been quiet this long, so a slow
/// producer (`tail -f … | herald publish --stdin`) is not held back.
const LINGER: Duration = Duration::from_millis(100);

/// Flags of `herald publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Topic to publish to.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Event type, e.g. OrderPlaced.
    #[arg(long = "type", value_name = "TYPE", required_unless_present = "stdin")]
    pub event_type: Option<String>,
    /// Ordering key, e.g. the aggregate id.
    #[arg(long)]
    pub key: Option<String>,
    /// Event id [default: a UUIDv7 assigned by the server].
    #[arg(long)]
    pub id: Option<String>,
    /// Emitting service (with --stdin: for lines that set none).
    #[arg(long)]
    pub source: Option<String>,
    /// MIME type of the payload (with --stdin: for lines that set none).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Version of the payload's schema (with --stdin: for lines that set none).
    #[arg(long)]
    pub schema_version: Option<String>,
    /// When the event happened, RFC 3339 [default: the publish time].
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub time: Option<prost_types::Timestamp>,
    /// Extension attribute; repeatable (with --stdin: added to every line's).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub attrs: Vec<(String, String)>,
    /// Payload, as UTF-8 text.
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Payload, read from a file as is.
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// Read events from stdin, one JSON object per line:
    /// {"type": "..", "key": "..", "id": "..", "source": "..", "data": "text" or any JSON value,
    /// "attributes": {"k": "v"}}; also content_type, schema_version, time and data_base64.
    /// Lines printed by `herald subscribe --json` are accepted as they are.
    #[arg(long, conflicts_with_all = ["event_type", "key", "id", "time", "data", "data_file"])]
    pub stdin: bool,
}

/// Runs `herald publish`.
///
/// # Errors
/// Bad input, an unreachable server or a refused publish.
pub async fn run(ctx: &Context, args: PublishArgs) -> Result<()> {
    let (results, outcome) = if args.stdin {
        let client = PublisherServiceClient::new(ctx.connect().await?);
        publish_stdin(ctx, client, &args).await
    } else {
        let event = flag_event(&args).await?;
        let mut client = PublisherServiceClient::new(ctx.connect().await?);
        let response = ctx
            .call(client.publish(proto::PublishRequest {
                topic: args.topic.clone(),
                events: vec![event],
            }))
            .await?;
        (response.results, Ok(()))
    };
    if !results.is_empty() || outcome.is_ok() {
        print_results(ctx, &args.topic, &results)?;
    }
    outcome
}

/// The event described by the flags.
async fn flag_event(args: &PublishArgs) -> Result<proto::Event> {
    let data = match (&args.data, &args.data_file) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(path)) => Bytes::from(
            tokio::fs::read(path)
                .await
                .with_context(|| format!("reading --data-file {}", path.display()))?,
        ),
        (None, None) => Bytes::new(),
    };
    Ok(proto::Event {
        id: args.id.clone().unwrap_or_default(),
        r#type: args.event_type.clone().unwrap_or_default(),
        source: args.source.clone().unwrap_or_default(),
        key: args.key.clone().unwrap_or_default(),
        time: args.time,
        content_type: args.content_type.clone().unwrap_or_default(),
        schema_version: args.schema_version.clone().unwrap_or_default(),
        data,
        attributes: args.attrs.iter().cloned().collect::<HashMap<_, _>>(),
        ..Default::default()
    })
}

/// One line of `--stdin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    schema_version: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    // Output-only fields of `herald subscribe --json`, accepted and ignored
    // so its output can be published again.
    #[serde(default, rename = "topic")]
    _topic: serde::de::IgnoredAny,
    #[serde(default, rename = "offset")]
    _offset: serde::de::IgnoredAny,
    #[serde(default, rename = "attempt")]
    _attempt: serde::de::IgnoredAny,
    #[serde(default, rename = "publish_time")]
    _publish_time: serde::de::IgnoredAny,
}

/// A stdin line → event; flags fill in what the line leaves unset.
fn line_event(text: &str, args: &PublishArgs) -> Result<proto::Event> {
    let line: Line = serde_json::from_str(text)?;
    let mut content_type = line.content_type.or_else(|| args.content_type.clone());
    let data = match (line.data.filter(|v| !v.is_null()), line.data_base64) {
        (Some(_), Some(_)) => bail!("set data or data_base64, not both"),
        (None, None) => Bytes::new(),
        (Some(serde_json::Value::String(s)), None) => Bytes::from(s),
        (Some(value), None) => {
            content_type.get_or_insert_with(|| "application/json".into());
            Bytes::from(serde_json::to_vec(&value)?)
        }
        (None, Some(b64)) => {
            Bytes::from(base64_decode(&b64).map_err(|e| anyhow!("data_base64: {e}"))?)
        }
    };
    let time = line
        .time
        .map(|t| parse_time(&t).map_err(|e| anyhow!("time: {e}")))
        .transpose()?;
    let mut attributes: HashMap<String, String> = args.attrs.iter().cloned().collect();
    attributes.extend(line.attributes);
    Ok(proto::Event {
        id: line.id.unwrap_or_default(),
        r#type: line.event_type,
        source: line
            .source
            .or_else(|| args.source.clone())
            .unwrap_or_default(),
        key: line.key.unwrap_or_default(),
        time,
        content_type: content_type.unwrap_or_default(),
        schema_version: line
            .schema_version
            .or_else(|| args.schema_version.clone())
            .unwrap_or_default(),
        data,
        attributes,
        ..Default::default()
    })
}

/// Stdin lines `first..=last` went into one request.
type LineRange = (usize, usize);

/// Streams stdin into PublishStream. Returns what was published even when a
/// later line or request fails, so the caller can show both.
async fn publish_stdin(
    ctx: &Context,
    mut client: PublisherServiceClient<super::connect::Transport>,
    args: &PublishArgs,
) -> (Vec<PublishResult>, Result<()>) {
    let mut results = Vec::new();
    let (tx, rx) = mpsc::channel::<PublishStreamRequest>(PIPELINE);
    let (ranges_tx, mut ranges) = mpsc::unbounded_channel::<LineRange>();
    let mut responses = match ctx
        .call(client.publish_stream(ReceiverStream::new(rx)))
        .await
    {
        Ok(r) => r,
        Err(e) => return (results, Err(e)),
    };
    let reader = tokio::spawn(read_stdin(args.clone(), tx, ranges_tx));
    loop {
        let response = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(status) => {
                reader.abort();
                return (results, Err(ctx.status_error(&status)));
            }
        };
        let (first, last) = ranges.recv().await.unwrap_or((0, 0));
        if response.error_code != 0 {
            reader.abort();
            let code = code_name(tonic::Code::from_i32(response.error_code));
            let published = match results.len() {
                0 => "nothing was published".to_string(),
                n => format!("{n} events of earlier lines were published"),
            };
            let err = anyhow!(
                "{code}: {} (stdin lines {first}-{last}; {published})",
                response.error_message
            );
            return (results, Err(err));
        }
        results.extend(response.results);
    }
    let outcome = match reader.await {
        Ok(Ok(0)) => {
            eprintln!("herald: no events on stdin");
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(match results.len() {
            0 => anyhow!("{e:#} (nothing was published)"),
            n => anyhow!("{e:#} ({n} events of earlier lines were published)"),
        }),
        Err(e) => Err(anyhow!("stdin reader failed: {e}")),
    };
    (results, outcome)
}

/// Reads JSON lines into requests of up to [`BATCH`] events. Returns the
/// number of events read; a bad line ends the stream with its line number.
async fn read_stdin(
    args: PublishArgs,
    tx: mpsc::Sender<PublishStreamRequest>,
    ranges: mpsc::UnboundedSender<LineRange>,
) -> Result<usize> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut batch = Vec::with_capacity(BATCH);
    let mut first_line = 0;
    let mut line_no = 0;
    let mut total = 0;
    let mut request_id = 0u64;
    let mut send = async |batch: &mut Vec<proto::Event>, first: usize, last: usize| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        request_id += 1;
        let _ = ranges.send((first, last));
        tx.send(PublishStreamRequest {
            topic: args.topic.clone(),
            events: std::mem::take(batch),
            request_id,
        })
        .await
        .map_err(|_| anyhow!("the server closed the publish stream"))
    };
    loop {
        let next = if batch.is_empty() {
            lines.next_line().await
        } else {
            match tokio::time::timeout(LINGER, lines.next_line()).await {
                Ok(next) => next,
                Err(_quiet) => {
                    send(&mut batch, first_line, line_no).await?;
                    continue;
                }
            }
        };
        let Some(text) = next.context("reading stdin")? else {
            break;
        };
        line_no += 1;
        if text.trim().is_empty() {
            continue;
        }
        let event = line_event(&text, &args).with_context(|| format!("stdin line {line_no}"))?;
        if batch.is_empty() {
            first_line = line_no;
        }
        batch.push(event);
        total += 1;
        if batch.len() == BATCH {
            send(&mut batch, first_line, line_no).await?;
        }
    }
    send(&mut batch, first_line, line_no).await?;
    Ok(total)
}

/// The outcome of `herald publish` in JSON.
#[derive(Debug, Serialize)]
struct PublishView<'a> {
    topic: &'a str,
    results: Vec<ResultView<'a>>,
}

/// One published event in JSON.
#[derive(Debug, Serialize)]
struct ResultView<'a> {
    id: &'a str,
    offset: u64,
    duplicate: bool,
}

fn print_results(ctx: &Context, topic: &str, results: &[PublishResult]) -> Result<()> {
    if ctx.json {
        let results: Vec<ResultView<'_>> = results
            .iter()
            .map(|r| ResultView {
                id: &r.id,
                offset: r.offset,
                duplicate: r.duplicate,
            })
            .collect();
        return print_json(&PublishView { topic, results });
    }
    if results.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&["OFFSET", "ID", "DUPLICATE"]);
    for r in results {
        table.push(vec![
            r.offset.to_string(),
            r.id.clone(),
            if r.duplicate { "yes" } else { "no" }.into(),
        ]);
    }
    table.print()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn args(extra: &[&str]) -> PublishArgs {
        let argv = ["herald", "--topic", "t", "--stdin"].iter().chain(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn lines_take_text_json_or_base64_data() {
        let a = args(&["--source", "cli", "--attr", "env=test"]);
        let e = line_event(r#"{"type":"A","data":"hi","key":"k"}"#, &a).unwrap();
        assert_eq!(
            (&e.r#type[..], &e.data[..], &e.key[..]),
            ("A", &b"hi"[..], "k")
        );
        assert_eq!(e.source, "cli");
        assert_eq!(e.attributes["env"], "test");
        assert_eq!(e.content_type, "");

        let e = line_event(r#"{"type":"A","data":{"n":1},"source":"x"}"#, &a).unwrap();
        assert_eq!(&e.data[..], br#"{"n":1}"#);
        assert_eq!(e.content_type, "application/json");
        assert_eq!(e.source, "x");

        let e = line_event(r#"{"type":"A","data":null,"data_base64":"AAE="}"#, &a).unwrap();
        assert_eq!(&e.data[..], &[0, 1]);
    }

    #[test]
    fn lines_with_typos_or_no_type_are_refused() {
        let a = args(&[]);
        assert!(line_event(r#"{"type":"A","dta":"x"}"#, &a).is_err());
        assert!(line_event(r#"{"data":"x"}"#, &a).is_err());
        assert!(line_event("not json", &a).is_err());
    }

    #[test]
    fn subscribe_json_output_is_accepted() {
        let line = r#"{"topic":"t","offset":3,"attempt":1,"id":"e1","type":"A","source":"s","key":"","time":"2026-01-31T12:00:00.000000Z","publish_time":"2026-01-31T12:00:00.000000Z","content_type":"","schema_version":"","attributes":{},"data":"x"}"#;
        let e = line_event(line, &args(&[])).unwrap();
        assert_eq!(e.id, "e1");
        assert!(e.time.is_some());
    }
}
