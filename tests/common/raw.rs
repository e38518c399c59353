//! Raw HTTP/2 for transport-edge tests: gRPC calls whose bodies the test
//! writes byte by byte (garbage, truncated or oversized messages), and a
//! view of when the server closes the connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tonic::{Code, Status};

/// One HTTP/2 connection to the server.
pub struct RawConn {
    send: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    /// The connection task: finishes when the server closes the connection.
    driver: tokio::task::JoinHandle<()>,
}

/// Connects and completes the HTTP/2 handshake.
pub async fn connect(addr: SocketAddr) -> RawConn {
    connect_with_window(addr, 65_535).await
}

/// Connects with a flow control window of `window` bytes per stream: the
/// server may send a call no more until the test reads its answers.
pub async fn connect_with_window(addr: SocketAddr, window: u32) -> RawConn {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    RawConn { send, addr, driver }
}

impl RawConn {
    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// Waits up to `within` for the server to close the connection.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, &mut self.driver).await.is_ok()
    }

    /// Starts a call of `path` (`/package.Service/Method`): returns the
    /// request body to write framed messages to, and the response.
    pub async fn start(&mut self, path: &str) -> (h2::SendStream<Bytes>, RawResponse) {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (response, body) = send.send_request(request, false).expect("send request");
        (body, RawResponse::new(response))
    }

    /// A call whose whole request body is `body`.
    pub async fn call(&mut self, path: &str, body: Bytes) -> RawResponse {
        let (mut request, response) = self.start(path).await;
        request.send_data(body, true).expect("send body");
        response
    }
}

impl Drop for RawConn {
    /// Closes the connection.
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The response of a raw call.
pub struct RawResponse {
    headers: Option<h2::client::ResponseFuture>,
    body: Option<h2::RecvStream>,
    /// A trailers-only response carries its status in the headers.
    status: Option<Status>,
    buf: BytesMut,
}

impl RawResponse {
    fn new(response: h2::client::ResponseFuture) -> Self {
        RawResponse {
            headers: Some(response),
            body: None,
            status: None,
            buf: BytesMut::new(),
        }
    }

    async fn body(&mut self) -> Option<&mut h2::RecvStream> {
        if let Some(headers) = self.headers.take() {
            let response = headers.await.expect("response headers");
            assert_eq!(response.status(), 200, "HTTP status");
            self.status = Status::from_header_map(response.headers());
            self.body = Some(response.into_body());
        }
        self.body.as_mut()
    }

    /// The next response message, `None` when the response data ends.
    pub async fn message(&mut self) -> Option<Bytes> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Some(self.buf.split_to(len).freeze());
                }
            }
            let body = self.body().await?;
            let chunk = body.data().await?.expect("response data");
            body.flow_control()
                .release_capacity(chunk.len())
                .expect("release capacity");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The remaining messages and the call's status.
    pub async fn finish(mut self) -> (Vec<Bytes>, Status) {
        let mut messages = Vec::new();
        while let Some(m) = self.message().await {
            messages.push(m);
        }
        if let Some(status) = self.status.take() {
            return (messages, status);
        }
        let body = self.body.as_mut().expect("response body");
        let trailers = body
            .trailers()
            .await
            .expect("trailers")
            .expect("trailers present");
        let status = Status::from_header_map(&trailers).expect("grpc-status in trailers");
        (messages, status)
    }

    /// The call's status, ignoring messages.
    pub async fn code(self) -> (Code, String) {
        let (_, status) = self.finish().await;
        (status.code(), status.message().to_string())
    }
}

/// `message` framed as one gRPC message (uncompressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// `message` encoded and framed.
pub fn encode(message: &impl prost::Message) -> Bytes {
    frame(&message.encode_to_vec())
}
