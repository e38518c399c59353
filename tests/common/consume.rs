//! A client's end of SubscriberService.Consume for tests: open a stream,
//! send acks, nacks and extensions, await batches, confirmations and the
//! stream's end.

use std::time::Duration;

use herald::proto;
use herald::proto::consume_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::TestServer;

pub const WAIT: Duration = Duration::from_secs(5);

/// The client's end of a Consume stream.
pub struct Consume {
    pub tx: Option<mpsc::Sender<proto::ConsumeRequest>>,
    pub rx: tonic::Streaming<proto::ConsumeResponse>,
}

pub fn open(topic: &str, group: &str) -> proto::ConsumeOpen {
    proto::ConsumeOpen {
        topic: topic.into(),
        group: group.into(),
        consumer: "test".into(),
        max_in_flight: Some(100),
        ..Default::default()
    }
}

pub fn request(kind: Kind) -> proto::ConsumeRequest {
    proto::ConsumeRequest { kind: Some(kind) }
}

pub fn ack_of(ack_ids: Vec<String>, request_id: u64, confirm: bool) -> Kind {
    Kind::Ack(proto::ConsumeAck {
        ack_ids,
        request_id,
        confirm,
    })
}

/// Opens a stream whose first requests are `first`; its side stays open.
pub async fn start(
    server: &TestServer,
    first: Vec<proto::ConsumeRequest>,
) -> Result<Consume, Status> {
    let (tx, rx) = mpsc::channel(64);
    for r in first {
        tx.send(r).await.unwrap();
    }
    let rx = server
        .subscriber()
        .consume(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Consume { tx: Some(tx), rx })
}

pub async fn consume(server: &TestServer, open: proto::ConsumeOpen) -> Consume {
    start(server, vec![request(Kind::Open(open))])
        .await
        .expect("Consume opens")
}

impl Consume {
    pub async fn send(&self, kind: Kind) {
        let tx = self.tx.as_ref().expect("client side open");
        tx.send(request(kind)).await.expect("stream open");
    }

    /// Closes the client's side.
    pub fn close(&mut self) {
        self.tx = None;
    }

    pub async fn maybe(&mut self, within: Duration) -> Option<proto::ConsumeResponse> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => panic!("the stream ended"),
            Ok(Err(status)) => panic!("the stream failed: {status:?}"),
            Err(_) => None,
        }
    }

    pub async fn next(&mut self) -> proto::ConsumeResponse {
        self.maybe(WAIT).await.expect("a response in time")
    }

    /// The next response, which must be a batch.
    pub async fn batch(&mut self) -> Vec<proto::Delivery> {
        let r = self.next().await;
        assert!(r.confirmation.is_none(), "a confirmation: {r:?}");
        assert!(!r.deliveries.is_empty(), "an empty response");
        r.deliveries
    }

    /// Batches until `n` deliveries arrived.
    pub async fn deliveries(&mut self, n: usize) -> Vec<proto::Delivery> {
        let mut out = Vec::new();
        while out.len() < n {
            out.extend(self.batch().await);
        }
        assert_eq!(out.len(), n, "more deliveries than expected");
        out
    }

    /// The next response, which must be a confirmation.
    pub async fn confirmation(&mut self) -> proto::ConsumeConfirmation {
        let r = self.next().await;
        assert!(r.deliveries.is_empty(), "a batch: {r:?}");
        r.confirmation.expect("a confirmation")
    }

    /// How the stream ends: `Ok` for OK. Batches sent before the end are
    /// skipped; a confirmation fails the test.
    pub async fn end(&mut self) -> Result<(), Status> {
        loop {
            match tokio::time::timeout(WAIT, self.rx.message()).await {
                Err(_) => panic!("the stream did not end"),
                Ok(Ok(Some(r))) => assert!(r.confirmation.is_none(), "{r:?}"),
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(status)) => return Err(status),
            }
        }
    }
}

pub fn ack_ids(batch: &[proto::Delivery]) -> Vec<String> {
    batch.iter().map(|d| d.ack_id.clone()).collect()
}

pub fn event_id(d: &proto::Delivery) -> &str {
    &d.event.as_ref().unwrap().id
}

pub fn outcomes(c: &proto::ConsumeConfirmation) -> Vec<proto::LeaseOutcome> {
    c.results
        .iter()
        .map(|r| proto::LeaseOutcome::try_from(r.outcome).unwrap())
        .collect()
}

/// The field an INVALID_ARGUMENT names, in its details and its message.
pub fn field(status: &Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let field = details
        .bad_request()
        .expect("field details")
        .field_violations[0]
        .field
        .clone();
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{status:?}"
    );
    field
}
