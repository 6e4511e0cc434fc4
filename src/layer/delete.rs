//! `DELETE`: the client ends its session.

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::service::{Answer, Handler};
use crate::era::VersionHeader;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::McpBody;

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn delete(self, parts: Parts, version: VersionHeader) -> Answer<ResBody, S::Error> {
        if !self.engine.config().client_termination {
            return Ok(self.reject(self.method_not_allowed()));
        }
        if let Err(rejection) = self.legacy_version(version) {
            return Ok(self.reject(rejection));
        }
        let (record, busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        drop(busy);
        let removed = self
            .engine
            .sessions()
            .end(record.id(), crate::CloseReason::Deleted)
            .await;
        match removed {
            Ok(true) => {
                let mut response = Response::new(McpBody::empty());
                *response.status_mut() = StatusCode::OK;
                Ok(response)
            }
            // Someone else ended it between the lookup and now.
            Ok(false) => Ok(self.reject(Rejection::new(RejectionKind::SessionNotFound))),
            Err(_) => Ok(self.reject(Rejection::store_unavailable())),
        }
    }
}
