//! The response stream of a PublishStream call, which also reads its
//! requests: one state machine, polled by the call's own task.
//!
//! Reading a request, enqueuing its append and answering the oldest
//! request happen in whichever poll finds them ready, so a request costs
//! no hand-over between tasks of ours: the append queue of the topic and
//! the transport are the only other parties. Appends are enqueued in
//! arrival order (so offsets follow request order), one at a time, and at
//! most [`PIPELINE_DEPTH`] requests wait for their answer; beyond that,
//! reading waits, and so does a client that stops reading answers.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio_stream::Stream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::codes::at_edge;
use super::convert::timestamp;
use super::guard::{Caller, Guard, Guarded};
use super::publisher::{finish, publish_span, results_out, stamp};
use super::requests::events as events_in;
use super::status::to_status;
use crate::broker::{Broker, PublishTicket};
use crate::proto::{PublishStreamRequest, PublishStreamResponse};
use crate::telemetry::propagation::TraceHeaders;

/// Requests of one PublishStream that may be in flight (enqueued, awaiting
/// their durable append) at once.
const PIPELINE_DEPTH: usize = 256;

/// What every request of the call shares.
struct Call {
    broker: Broker,
    guard: Guard,
    caller: Caller,
    /// The stream's metadata is the trace context of each of its requests.
    trace: Option<TraceHeaders>,
}

/// What answering a request needs to close its span.
struct Done {
    span: tracing::Span,
    topic: String,
    started: Instant,
}

/// A request on its way: its append enqueued (or refused), or the status
/// that ends the call once the requests before it are answered.
enum Waiting {
    Request {
        request_id: u64,
        done: Done,
        ticket: Result<PublishTicket, Status>,
    },
    /// The request stream failed (a message over the size limit, or one
    /// that does not decode): nothing after it can be trusted to be
    /// framed right.
    Failed(Status),
}

type Enqueuing = Pin<Box<dyn Future<Output = Waiting> + Send>>;

/// The response stream of one PublishStream call.
pub(super) struct PublishFlow {
    call: Arc<Call>,
    inbound: Streaming<PublishStreamRequest>,
    /// No more requests will be read.
    reading_done: bool,
    /// The request being authorized and enqueued (one at a time, in order).
    enqueuing: Option<Enqueuing>,
    waiting: VecDeque<Waiting>,
    ended: bool,
}

impl PublishFlow {
    pub(super) fn new(
        broker: Broker,
        guard: Guard,
        caller: Caller,
        trace: Option<TraceHeaders>,
        inbound: Streaming<PublishStreamRequest>,
    ) -> Self {
        PublishFlow {
            call: Arc::new(Call {
                broker,
                guard,
                caller,
                trace,
            }),
            inbound,
            reading_done: false,
            enqueuing: None,
            waiting: VecDeque::new(),
            ended: false,
        }
    }

    /// Reads and enqueues requests while there are some and room for them.
    fn read(&mut self, cx: &mut Context<'_>) {
        while !self.reading_done && self.waiting.len() < PIPELINE_DEPTH {
            if let Some(enqueuing) = &mut self.enqueuing {
                match enqueuing.as_mut().poll(cx) {
                    Poll::Ready(waiting) => {
                        self.enqueuing = None;
                        self.waiting.push_back(waiting);
                        continue;
                    }
                    Poll::Pending => return,
                }
            }
            match Pin::new(&mut self.inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(req))) => {
                    self.enqueuing = Some(Box::pin(enqueue(self.call.clone(), req)));
                }
                Poll::Ready(Some(Err(status))) => {
                    self.waiting.push_back(Waiting::Failed(at_edge(status)));
                    self.reading_done = true;
                }
                Poll::Ready(None) => self.reading_done = true,
                Poll::Pending => return,
            }
        }
    }

    /// The answer to the oldest request, once its append is done.
    fn answer(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<PublishStreamResponse, Status>>> {
        let Some(front) = self.waiting.front_mut() else {
            return if self.reading_done && self.enqueuing.is_none() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        };
        let (request_id, done, ticket) = match front {
            Waiting::Failed(status) => {
                let status = status.clone();
                self.ended = true;
                return Poll::Ready(Some(Err(status)));
            }
            Waiting::Request {
                request_id,
                done,
                ticket,
            } => (*request_id, done, ticket),
        };
        let result = match ticket {
            Ok(ticket) => {
                let _entered = done.span.enter();
                ready!(ticket.as_mut().poll(cx)).map_err(to_status)
            }
            Err(status) => Err(status.clone()),
        };
        finish(&done.span, &done.topic, done.started, &result);
        self.waiting.pop_front();
        Poll::Ready(Some(Ok(match result {
            Ok(p) => PublishStreamResponse {
                request_id,
                results: results_out(&p),
                error_code: 0,
                error_message: String::new(),
                publish_time: Some(timestamp(p.publish_time_us)),
            },
            Err(status) => PublishStreamResponse {
                request_id,
                results: Vec::new(),
                error_code: status.code() as i32,
                error_message: status.message().to_string(),
                publish_time: None,
            },
        })))
    }
}

impl Stream for PublishFlow {
    type Item = Result<PublishStreamResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.read(cx);
        self.answer(cx)
    }
}

/// Authorizes one request and enqueues its append. Publishing to a topic
/// that does not exist (auto-create) also needs `manage` on it, and is
/// logged once the request succeeded.
async fn enqueue(call: Arc<Call>, req: PublishStreamRequest) -> Waiting {
    let started = Instant::now();
    let allowed = match call.guard.authorize(&call.caller, &req) {
        Ok(()) => {
            call.guard
                .check_create(&call.caller, &req.topic, None)
                .await
        }
        Err(status) => Err(status),
    };
    let allowed = allowed.and_then(|creates| Ok((creates, events_in(req.events)?)));
    let (span, ticket) = match allowed {
        Ok((creates, mut events)) => {
            let (span, stored) = publish_span(&req.topic, &events, call.trace.as_ref());
            stamp(&mut events, stored.as_ref());
            let ticket = call
                .broker
                .submit(&req.topic, events)
                .instrument(span.clone())
                .await
                .map_err(to_status);
            if creates && ticket.is_ok() {
                let method = PublishStreamRequest::RPC.method;
                super::audit::implicit_create(&call.caller, method, &req.topic, None);
            }
            (span, ticket)
        }
        Err(status) => (tracing::Span::none(), Err(status)),
    };
    Waiting::Request {
        request_id: req.request_id,
        done: Done {
            span,
            topic: req.topic,
            started,
        },
        ticket,
    }
}
