//! Status codes of requests that tonic rejects before a handler sees them.
//!
//! gRPC layer. tonic answers a request message over the size limit with
//! OUT_OF_RANGE and one that does not decode with INTERNAL. Both are the
//! client's doing, and gRPC's status code guide gives them
//! RESOURCE_EXHAUSTED and INVALID_ARGUMENT: a client must not retry them as
//! if the server had failed. [`EdgeCodesLayer`] rewrites the `grpc-status`
//! of exactly those tonic-made statuses, recognised by their message, in
//! the trailers-only responses tonic makes of them for unary and
//! server-streaming calls (in every service). Handlers that read request
//! streams see the error themselves and map it with [`at_edge`]. The
//! message is kept. Calls of Google services Herald does not offer (Pub/Sub
//! schemas, IAM), which tonic answers UNIMPLEMENTED without a word, get a
//! sentence saying so.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, HeaderValue};
use tonic::{Code, Status};

/// tonic's message for a request message over the decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large";
/// prost's message for bytes that are not the expected message.
const UNDECODABLE: &str = "failed to decode Protobuf message";
/// tonic's message for a body that ends inside a message.
const TRUNCATED: &str = "Unexpected EOF decoding stream.";
/// tonic's message for a unary request without a message.
const MISSING: &str = "Missing request message.";

/// The code a tonic-made status of a bad request should carry, if
/// `code` and `message` are one.
pub fn edge_code(code: Code, message: &str) -> Option<Code> {
    match code {
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Some(Code::ResourceExhausted),
        Code::Internal
            if message.starts_with(UNDECODABLE) || message == TRUNCATED || message == MISSING =>
        {
            Some(Code::InvalidArgument)
        }
        _ => None,
    }
}

/// `status` with the code it should carry at the edge (see the module
/// docs); any other status unchanged.
pub fn at_edge(status: Status) -> Status {
    match edge_code(status.code(), status.message()) {
        Some(code) => Status::new(code, status.message()),
        None => status,
    }
}

/// What Herald answers for services it does not offer, by path prefix.
const UNOFFERED: &[(&str, &str)] = &[
    (
        "/google.pubsub.v1.SchemaService/",
        "Pub/Sub schemas are not offered by Herald; messages are not validated against a schema.",
    ),
    (
        "/google.iam.v1.IAMPolicy/",
        "IAM policies are not offered by Herald; permissions come from its auth file (auth.file).",
    ),
];

/// The sentence for a call of `path` if Herald does not offer its service.
fn unoffered(path: &str) -> Option<&'static str> {
    UNOFFERED
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// Rewrites the `grpc-status` in `headers` if it is one of tonic's
/// bad-request statuses, or says why a service is not offered.
fn rewrite(headers: &mut HeaderMap, unoffered: Option<&'static str>) {
    if let Some(why) = unoffered
        && headers.get(Status::GRPC_STATUS).map(HeaderValue::as_bytes) == Some(b"12")
    {
        let _ = Status::unimplemented(why).add_header(headers);
        return;
    }
    let candidate = match headers.get(Status::GRPC_STATUS) {
        Some(code) => matches!(code.as_bytes(), b"11" | b"13"),
        None => false,
    };
    if !candidate {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if let Some(code) = edge_code(status.code(), status.message()) {
        headers.insert(Status::GRPC_STATUS, HeaderValue::from(code as i32));
    }
}

/// Gives tonic's bad-request statuses their edge codes (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeCodesLayer;

impl<S> tower::Layer<S> for EdgeCodesLayer {
    type Service = EdgeCodes<S>;

    fn layer(&self, inner: S) -> EdgeCodes<S> {
        EdgeCodes { inner }
    }
}

/// The service of [`EdgeCodesLayer`].
#[derive(Debug, Clone)]
pub struct EdgeCodes<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for EdgeCodes<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        EdgeFuture {
            unoffered: unoffered(request.uri().path()),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`EdgeCodes`].
    pub struct EdgeFuture<F> {
        #[pin]
        inner: F,
        unoffered: Option<&'static str>,
    }
}

impl<F, B, E> Future for EdgeFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        rewrite(response.headers_mut(), *this.unoffered);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_bad_request_statuses_are_rewritten() {
        let too_large = Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
        );
        let mut headers = HeaderMap::new();
        too_large.add_header(&mut headers).unwrap();
        rewrite(&mut headers, None);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), too_large.message());

        let garbage = Status::internal("failed to decode Protobuf message: invalid wire type");
        assert_eq!(at_edge(garbage).code(), Code::InvalidArgument);

        // Herald's own OUT_OF_RANGE (reading before retention) and INTERNAL stay.
        for status in [
            Status::out_of_range("offset 3 is before the first retained offset 10"),
            Status::internal("storage failed"),
        ] {
            let mut headers = HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            rewrite(&mut headers, None);
            let after = Status::from_header_map(&headers).unwrap();
            assert_eq!(after.code(), status.code(), "{}", status.message());
        }
    }

    #[test]
    fn services_herald_does_not_offer_say_so() {
        let why = unoffered("/google.iam.v1.IAMPolicy/GetIamPolicy").expect("IAM");
        let mut headers = HeaderMap::new();
        Status::unimplemented("").add_header(&mut headers).unwrap();
        rewrite(&mut headers, Some(why));
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(
            status.message().contains("IAM policies are not offered"),
            "{status:?}"
        );
        assert!(unoffered("/google.pubsub.v1.SchemaService/CreateSchema").is_some());
        assert!(unoffered("/herald.v1.AdminService/GetTopic").is_none());
    }
}
