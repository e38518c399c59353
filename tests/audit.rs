//! Management actions reach the audit log (target `herald::audit`) with
//! the principal, its credential, the action, the target and the outcome;
//! refusals too, over gRPC and from the console. Alone in its test binary: tracing's per-callsite interest
//! cache is shared by the threads of a binary, and other tests running
//! beside a thread-local subscriber could hide events from it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use tonic::Code;

/// Collects the events of the `herald::audit` target as text.
#[derive(Clone, Default)]
struct Audit(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Audit {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "herald::audit" {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", f.name(), v));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.push_str(&format!("{}={} ", f.name(), v));
            }
        }
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

// One thread: every task of the in-process server logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn management_actions_are_audited_with_principal_action_and_target() {
    use tracing_subscriber::layer::SubscriberExt;
    let audit = Audit::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(audit.clone()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens = write_auth_file(
        &file,
        &[
            PrincipalSpec {
                name: "ops",
                admin: false,
                rules: &[(&["manage", "publish"], &["orders"])],
            },
            PrincipalSpec {
                name: "intruder",
                admin: false,
                rules: &[(&["publish"], &["orders"])],
            },
        ],
    );
    let server = SecureServer::start(
        Protection {
            auth_file: Some(file.clone()),
            ..Default::default()
        },
        |c| c.groups.state_flush_interval = Duration::from_millis(20),
    )
    .await;
    let publish = async |ch: &herald::cli::client::connect::Transport, topic: &str| {
        PublisherServiceClient::new(ch.clone())
            .publish(proto::PublishRequest {
                topic: topic.into(),
                events: vec![common::event("x")],
            })
            .await
            .map(|_| ())
    };
    let ops = server.channel(None, Some(&tokens["ops"])).await.unwrap();
    let intruder = server
        .channel(None, Some(&tokens["intruder"]))
        .await
        .unwrap();
    publish(&ops, "orders").await.unwrap();
    let mut a = AdminServiceClient::new(ops.clone());
    a.create_group(proto::CreateGroupRequest {
        group: Some(proto::Group {
            topic: "orders".into(),
            name: "billing".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let err = AdminServiceClient::new(intruder)
        .delete_topic(proto::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = a
        .delete_group(proto::DeleteGroupRequest {
            topic: "orders".into(),
            group: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The console's actions reach the same log, refusals included.
    let state = Arc::new(herald::auth::AuthState::load(&file, 10).unwrap());
    let auth = Arc::new(herald::http::ServerAuth::new(state));
    let console = herald::http::Console::new(server.server().broker.clone(), Some(auth)).unwrap();
    let mut web = common::web::Web::new(console.router());
    web.post("/login", &[("token", &tokens["intruder"])]).await;
    web.get("/login").await;
    let r = web
        .post("/topics/orders/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, axum::http::StatusCode::FORBIDDEN);
    let lines = audit.0.lock().unwrap().clone();
    let has = |parts: &[&str]| lines.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    let id = herald::auth::token::id_of(&tokens["ops"]).unwrap();
    assert!(
        has(&[
            "INFO",
            "principal=ops",
            &format!("credential=token:{id}"),
            "action=implicit_create",
            "topic=orders"
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&[
            "principal=ops",
            "action=AdminService/CreateGroup",
            "topic=orders",
            "group=Some(\"billing\")",
            "outcome=ok"
        ]) || has(&[
            "principal=ops",
            "action=AdminService/CreateGroup",
            "topic=orders",
            "group=billing",
            "outcome=ok"
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&[
            "WARN",
            "principal=intruder",
            "action=AdminService/DeleteTopic",
            "outcome=denied"
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&[
            "principal=ops",
            "action=AdminService/DeleteGroup",
            "outcome=NotFound"
        ]),
        "{lines:#?}"
    );
    let intruder_id = herald::auth::token::id_of(&tokens["intruder"]).unwrap();
    assert!(
        has(&[
            "principal=intruder",
            &format!("credential=token:{intruder_id}"),
            "action=console",
            "path=/topics/orders/delete",
            "status=403"
        ]),
        "{lines:#?}"
    );
    server.stop().await;
}
