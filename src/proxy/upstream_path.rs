//! The path and query an upstream request carries (`forward.rs`, after the
//! route stage matched): the matched path with the route's prefix
//! stripped and its `rewrite` applied, then the client's query.
//!
//! Each is written into a per-thread arena and handed out as a slice of
//! it: awc clones the URI (its connector keeps a copy), and a slice's
//! clone is a reference count, where a `Bytes` made from a `String` takes
//! a second allocation at its first clone. Once the requests of a chunk
//! are done with it, the arena writes over it again: in steady state a
//! request's upstream path allocates nothing.

use std::borrow::Cow;
use std::cell::RefCell;

use actix_web::{HttpMessage, HttpRequest};
use bytes::{Bytes, BytesMut};

use crate::context::{MatchedRoute, RequestFacts};
use crate::error::GatewayError;
use crate::path::{normalize_path, strip_segment_prefix};
use crate::settings::PathRewrite;
use crate::state::Pinned;

/// Bytes an arena chunk holds: about 100 paths of usual length.
const ARENA_CHUNK: usize = 4096;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The path and query sent upstream for the matched route; 400
/// (`BadPath`) when a rewrite cannot be made safe.
pub fn upstream_path_and_query(
    req: &HttpRequest,
    gw: &Pinned,
    matched: &MatchedRoute,
) -> Result<Bytes, GatewayError> {
    let route = gw.routes.get(matched.index);
    let matched_path = matched.path(req.path());
    let path = match &route.strip_prefix {
        Some(prefix) => strip_segment_prefix(matched_path, prefix),
        None => Cow::Borrowed(matched_path),
    };
    let path = match route.features.as_deref().and_then(|f| f.rewrite.as_ref()) {
        Some(rewrite) => Cow::Owned(rewritten(rewrite, &path).ok_or(GatewayError::BadPath)?),
        None => path,
    };
    Ok(in_arena(path.as_bytes(), req.uri().query()))
}

/// The upstream path again, for a retry (the first attempt's URI took it).
pub fn retry_path(req: &HttpRequest, gw: &Pinned) -> Result<Bytes, GatewayError> {
    let ext = req.extensions();
    match &RequestFacts::of(&ext).matched {
        Some(matched) => upstream_path_and_query(req, gw, matched),
        None => Err(GatewayError::Internal),
    }
}

/// `path` and `?query` as one slice of this thread's arena.
fn in_arena(path: &[u8], query: Option<&str>) -> Bytes {
    let len = path.len() + query.map_or(0, |q| q.len() + 1);
    ARENA.with_borrow_mut(|arena| {
        if arena.capacity() < len {
            // Reclaims the chunk in place when no slice of it is left,
            // else starts a new one (the old one is freed with its last
            // slice).
            arena.reserve(len.max(ARENA_CHUNK));
        }
        arena.extend_from_slice(path);
        if let Some(q) = query {
            arena.extend_from_slice(b"?");
            arena.extend_from_slice(q.as_bytes());
        }
        arena.split().freeze()
    })
}

/// The path after a route's `rewrite`: normalised again, so a replacement
/// cannot smuggle `..` or `//` to the upstream; `None` when it cannot be
/// made safe. An unmatched pattern leaves the path as is.
fn rewritten(rewrite: &PathRewrite, path: &str) -> Option<String> {
    match rewrite.apply(path) {
        Some(rewritten) => normalize_path(&rewritten),
        None => Some(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_slices_of_one_reused_chunk() {
        ARENA.with_borrow_mut(|arena| *arena = BytesMut::new());
        let first = in_arena(b"/a/b", Some("x=1"));
        let second = in_arena(b"/c", None);
        assert_eq!(&first[..], b"/a/b?x=1");
        assert_eq!(&second[..], b"/c");
        // Both in one chunk: the second follows the first.
        assert_eq!(first.as_ptr().wrapping_add(first.len()), second.as_ptr());
        let chunk_start = first.as_ptr();
        drop((first, second));
        // Nothing of the chunk is left: writing more than its free tail
        // reclaims it from its start instead of allocating.
        let long = vec![b'p'; ARENA_CHUNK - 5];
        let reused = in_arena(&long, None);
        assert_eq!(reused.as_ptr(), chunk_start);
    }

    #[test]
    fn a_chunk_still_in_use_is_left_alone() {
        let held = in_arena(b"/held", None);
        let long = vec![b'q'; ARENA_CHUNK];
        let other = in_arena(&long, None);
        assert_eq!(&held[..], b"/held", "a held path is never written over");
        assert_eq!(&other[..], &long[..]);
    }
}
