//! `GET /v1/events`: Server-Sent Events of what the store commits, as it
//! commits it. Fed by the store's change channel (no polling); a comment
//! line every 15 s keeps proxies from closing an idle stream; a subscriber
//! that falls behind gets a `lagged` event (then re-reads the state)
//! instead of growing the server's memory. Streams open at once are
//! bounded (`--max-streams`), and every stream ends when shutdown begins.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem::http::StatusCode;
use poem::web::sse::Event;
use poem_openapi::param::Query;
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use uuid::Uuid;

use super::ApiTags;
use super::auth::ReadAccess;
use super::channels::ChannelDto;
use super::error_docs::Errors;
use super::error_docs::status::COMMON;
use super::operations::OperationDto;
use super::packages::PackageDto;
use super::problem::{ErrorCode, Problem};
use crate::files::Layout;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::events::Committed;

type StreamErrors = Errors<COMMON>;

pub struct EventsApi {
    pub store: Store,
    pub layout: Option<Layout>,
    pub shutdown: Shutdown,
    /// One permit per open stream (`--max-streams`).
    pub streams: Arc<Semaphore>,
    /// How often an idle stream gets a comment line (`--event-heartbeat`).
    pub heartbeat: Duration,
}

/// A deleted package.
#[derive(Debug, Object)]
#[oai(rename = "PackageDeleted")]
pub struct PackageDeleted {
    pub id: Uuid,
}

/// A channel no longer followed.
#[derive(Debug, Object)]
#[oai(rename = "ChannelDeleted")]
pub struct ChannelDeletedEvent {
    pub id: Uuid,
}

/// The stream fell behind and missed changes: read the current state again
/// (the stream goes on).
#[derive(Debug, Object)]
#[oai(rename = "Lagged")]
pub struct Lagged {
    /// How many changes were missed.
    pub missed: u64,
}

/// One event of the stream; its SSE `event:` field names which:
/// `operation`, `package`, `package_deleted` or `lagged`.
#[derive(Debug, Union)]
#[oai(rename = "StreamEvent", one_of)]
pub enum StreamEvent {
    Operation(OperationDto),
    Package(PackageDto),
    PackageDeleted(PackageDeleted),
    Channel(ChannelDto),
    ChannelDeleted(ChannelDeletedEvent),
    Lagged(Lagged),
}

impl StreamEvent {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::Operation(_) => "operation",
            StreamEvent::Package(_) => "package",
            StreamEvent::PackageDeleted(_) => "package_deleted",
            StreamEvent::Channel(_) => "channel",
            StreamEvent::ChannelDeleted(_) => "channel_deleted",
            StreamEvent::Lagged(_) => "lagged",
        }
    }
}

#[derive(ApiResponse)]
enum StreamResponse {
    /// A `text/event-stream` that lasts until the client closes it (or the
    /// server stops). No event is replayed: after a reconnect, read the
    /// current state.
    #[oai(status = 200)]
    Stream(EventStream<BoxStream<'static, StreamEvent>>),
}

/// Which changes a subscriber wants.
#[derive(Debug, Clone, Copy)]
struct Filter {
    package_id: Option<Uuid>,
    operation_id: Option<Uuid>,
}

impl Filter {
    fn wants(&self, change: &Committed) -> bool {
        self.package_id.is_none_or(|id| change.package_id() == id)
            && self
                .operation_id
                .is_none_or(|id| change.operation_id() == Some(id))
    }
}

/// What a subscriber holds: its receiver, its place among the streams and
/// the signal that ends it.
struct Subscription {
    changes: broadcast::Receiver<Arc<Committed>>,
    filter: Filter,
    layout: Option<Layout>,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
    _open: crate::metrics::StreamGuard,
}

impl Subscription {
    /// The next event for this subscriber, or `None` when the stream ends.
    async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = self.shutdown.wait() => return None,
            };
            match received {
                Ok(change) if self.filter.wants(&change) => {
                    return Some(match &*change {
                        Committed::Operation(op) => StreamEvent::Operation(op.clone().into()),
                        Committed::Package(p) => {
                            StreamEvent::Package(PackageDto::new(p.clone(), self.layout.as_ref()))
                        }
                        Committed::PackageDeleted(id) => {
                            StreamEvent::PackageDeleted(PackageDeleted { id: *id })
                        }
                        Committed::Channel(c) => StreamEvent::Channel(c.clone().into()),
                        Committed::ChannelDeleted(id) => {
                            StreamEvent::ChannelDeleted(ChannelDeletedEvent { id: *id })
                        }
                    });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    crate::metrics::global().events_lagged.inc();
                    return Some(StreamEvent::Lagged(Lagged { missed }));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[OpenApi(tag = "ApiTags::Operations")]
impl EventsApi {
    /// Follow changes as they happen (Server-Sent Events).
    ///
    /// Role: `read`. A `text/event-stream`: `event: operation` with the
    /// operation at every saved progress and state change, `event: package`
    /// with the package at every change, `event: package_deleted` with
    /// `{"id"}`, `event: channel` with a channel at every change (a sync's
    /// outcome included) and `event: channel_deleted` with `{"id"}`, and `event: lagged` with `{"missed"}` when this stream fell
    /// behind (read the state again; the stream goes on). A comment line
    /// comes at least every 15 s. Nothing is replayed: after a reconnect,
    /// read the current state. `package_id` keeps the events of one package
    /// (its operations included); `operation_id` those of one operation.
    /// Past `--max-streams` open streams: 503 `unavailable`.
    #[oai(path = "/v1/events", method = "get", operation_id = "stream_events")]
    async fn events(
        &self,
        _auth: ReadAccess,
        /// Only the events of this package and its operations.
        package_id: Query<Option<Uuid>>,
        /// Only the events of this operation.
        operation_id: Query<Option<Uuid>>,
    ) -> Result<StreamResponse, StreamErrors> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "too many event streams are open; retry later",
            )
            .with_header(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from_static("5"),
            )
        })?;
        // Subscribed before answering, so nothing committed after the
        // answer's headers is missed.
        let subscription = Subscription {
            changes: self.store.subscribe(),
            filter: Filter {
                package_id: package_id.0,
                operation_id: operation_id.0,
            },
            layout: self.layout.clone(),
            shutdown: self.shutdown.clone(),
            _permit: permit,
            _open: crate::metrics::global().event_stream_open(),
        };
        let stream = futures_util::stream::unfold(subscription, |mut s| async move {
            s.next().await.map(|event| (event, s))
        })
        .boxed();
        Ok(StreamResponse::Stream(
            EventStream::new(stream)
                .keep_alive(self.heartbeat.max(Duration::from_millis(10)))
                .to_event(|event| {
                    let name = event.name();
                    let data = match &event {
                        StreamEvent::Operation(o) => o.to_json_string(),
                        StreamEvent::Package(p) => p.to_json_string(),
                        StreamEvent::PackageDeleted(d) => d.to_json_string(),
                        StreamEvent::Channel(c) => c.to_json_string(),
                        StreamEvent::ChannelDeleted(d) => d.to_json_string(),
                        StreamEvent::Lagged(l) => l.to_json_string(),
                    };
                    Event::message(data).event_type(name)
                }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(
        changes: broadcast::Receiver<Arc<Committed>>,
        filter: Filter,
    ) -> (Subscription, crate::shutdown::ShutdownTrigger) {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let (trigger, shutdown) = Shutdown::new();
        let s = Subscription {
            changes,
            filter,
            layout: None,
            shutdown,
            _permit: permit,
            _open: crate::metrics::global().event_stream_open(),
        };
        (s, trigger)
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_and_goes_on() {
        let (tx, rx) = broadcast::channel(4);
        let everything = Filter {
            package_id: None,
            operation_id: None,
        };
        let (mut s, trigger) = subscription(rx, everything);
        let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            tx.send(Arc::new(Committed::PackageDeleted(*id))).unwrap();
        }
        // The ring holds 4: the first 6 are gone, and the stream says so
        // instead of holding them.
        match s.next().await {
            Some(StreamEvent::Lagged(Lagged { missed })) => assert_eq!(missed, 6),
            other => panic!("{other:?}"),
        }
        for id in &ids[6..] {
            match s.next().await {
                Some(StreamEvent::PackageDeleted(d)) => assert_eq!(d.id, *id),
                other => panic!("{other:?}"),
            }
        }
        trigger.fire();
        assert!(s.next().await.is_none(), "shutdown ends the stream");
    }

    #[tokio::test]
    async fn filters_keep_one_package_or_one_operation() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let by_package = Filter {
            package_id: Some(a),
            operation_id: None,
        };
        assert!(by_package.wants(&Committed::PackageDeleted(a)));
        assert!(!by_package.wants(&Committed::PackageDeleted(b)));
        let by_operation = Filter {
            package_id: None,
            operation_id: Some(b),
        };
        assert!(!by_operation.wants(&Committed::PackageDeleted(b)));
    }
}
