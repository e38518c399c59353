//! W3C trace context (`traceparent`, `tracestate`) between a publisher's
//! gRPC metadata, the stored event and the spans of its deliveries.
//!
//! A publish request's `traceparent` is stored in each of its events'
//! attributes (an event that already carries one keeps its own), so every
//! delivery of the event, however late, can continue the publisher's trace.
//! Parsing and formatting are the SDK's [`TraceContextPropagator`]'s.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataMap};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header and attribute holding the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header and attribute holding the W3C vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// gRPC request metadata as a propagation carrier.
pub struct MetadataCarrier<'a>(pub &'a MetadataMap);

impl Extractor for MetadataCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// An event's attributes (sorted by key) as a propagation carrier.
pub struct AttributesCarrier<'a>(pub &'a [(String, String)]);

impl Extractor for AttributesCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// A valid remote trace context: the parsed context and its header values
/// as they came, for storing with events.
#[derive(Debug, Clone)]
pub struct TraceHeaders {
    /// Parsed, with the remote span as the active span.
    pub context: Context,
    /// The `traceparent` value.
    pub traceparent: String,
    /// The `tracestate` value, if any.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The trace context of a request, when its metadata carries a valid
    /// `traceparent`. Costs one header lookup when it does not.
    pub fn from_metadata(metadata: &MetadataMap) -> Option<TraceHeaders> {
        let carrier = MetadataCarrier(metadata);
        let traceparent = carrier.get(TRACEPARENT)?;
        let context = TraceContextPropagator::new().extract(&carrier);
        if !context.span().span_context().is_valid() {
            return None;
        }
        Some(TraceHeaders {
            traceparent: traceparent.to_owned(),
            tracestate: carrier
                .get(TRACESTATE)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            context,
        })
    }

    /// The context of `span` (as exported over OTLP), when it is recorded
    /// by the OpenTelemetry layer.
    pub fn of_span(span: &tracing::Span) -> Option<TraceHeaders> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut headers: HashMap<String, String> = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(&context, &mut headers);
        Some(TraceHeaders {
            traceparent: headers.remove(TRACEPARENT)?,
            tracestate: headers.remove(TRACESTATE).filter(|s| !s.is_empty()),
            context,
        })
    }

    /// Stores the headers in an event's attributes (kept sorted by key),
    /// unless the event already has a `traceparent` of its own.
    pub fn stamp(&self, attributes: &mut Vec<(String, String)>) {
        let Err(at) = attributes.binary_search_by(|(k, _)| k.as_str().cmp(TRACEPARENT)) else {
            return;
        };
        attributes.insert(at, (TRACEPARENT.to_owned(), self.traceparent.clone()));
        if let Some(state) = &self.tracestate
            && let Err(at) = attributes.binary_search_by(|(k, _)| k.as_str().cmp(TRACESTATE))
        {
            attributes.insert(at, (TRACESTATE.to_owned(), state.clone()));
        }
    }
}

/// The trace context stored with an event, if it carries a valid one.
pub fn event_context(attributes: &[(String, String)]) -> Option<Context> {
    let carrier = AttributesCarrier(attributes);
    carrier.get(TRACEPARENT)?;
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// The trace context of a request's metadata, if it carries a valid one.
pub fn request_context(metadata: &MetadataMap) -> Option<Context> {
    let carrier = MetadataCarrier(metadata);
    carrier.get(TRACEPARENT)?;
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn metadata(traceparent: &str, tracestate: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(TRACEPARENT, traceparent.parse().unwrap());
        if let Some(s) = tracestate {
            m.insert(TRACESTATE, s.parse().unwrap());
        }
        m
    }

    #[test]
    fn request_headers_are_stamped_into_events_without_their_own() {
        let headers = TraceHeaders::from_metadata(&metadata(PARENT, Some("k=v"))).unwrap();
        assert_eq!(
            headers.context.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let mut attrs = vec![("a".into(), "1".into()), ("z".into(), "2".into())];
        headers.stamp(&mut attrs);
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", TRACEPARENT, TRACESTATE, "z"]);
        let cx = event_context(&attrs).unwrap();
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "b7ad6b7169203331"
        );

        // The event's own context wins, and no foreign tracestate is added.
        let own = "00-11111111111111111111111111111111-2222222222222222-01";
        let mut attrs = vec![(TRACEPARENT.to_string(), own.to_string())];
        headers.stamp(&mut attrs);
        assert_eq!(attrs, vec![(TRACEPARENT.to_string(), own.to_string())]);
    }

    #[test]
    fn malformed_or_missing_headers_are_ignored() {
        assert!(TraceHeaders::from_metadata(&MetadataMap::new()).is_none());
        assert!(TraceHeaders::from_metadata(&metadata("00-garbage", None)).is_none());
        assert!(request_context(&metadata("00-garbage", None)).is_none());
        assert!(event_context(&[("traceparent".into(), "nope".into())]).is_none());
        assert!(event_context(&[]).is_none());
    }
}
