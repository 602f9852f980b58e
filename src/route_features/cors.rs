//! CORS for a route with `cors`: preflights answered by the gateway,
//! actual responses decorated for allowed origins only (a disallowed
//! origin gets no CORS header, so the browser withholds the response).

use actix_web::http::header::{
    self, HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
};
use actix_web::http::Method;
use actix_web::HttpResponse;

use crate::settings::Cors;

/// The method a preflight asks about: `OPTIONS` with
/// `Access-Control-Request-Method`; `None` for any other request.
pub fn preflight_method<'h>(method: &Method, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    if method != Method::OPTIONS {
        return None;
    }
    headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .map(HeaderValue::as_bytes)
}

fn vary_origin(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// 204 with the route's CORS policy when the origin and method are
/// allowed; a bare 204 (no CORS headers: the browser refuses) otherwise.
pub fn preflight_answer(cors: &Cors, origin: &HeaderValue, method: &[u8]) -> HttpResponse {
    let mut res = HttpResponse::NoContent().finish();
    let headers = res.headers_mut();
    vary_origin(headers);
    if !cors.allows_origin(origin.as_bytes()) || !cors.allows_method(method) {
        return res;
    }
    allow_origin(cors, origin, headers);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        cors.allow_methods_value.clone(),
    );
    // Nothing listed: only the CORS-safelisted request headers may be sent.
    if let Some(v) = &cors.allow_headers_value {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    headers.insert(ACCESS_CONTROL_MAX_AGE, cors.max_age_value.clone());
    res
}

fn allow_origin(cors: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    let value = match &cors.allow_origins {
        None => HeaderValue::from_static("*"),
        Some(_) => origin.clone(),
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if cors.allow_credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// CORS headers on an actual response to an allowed origin.
pub fn decorate(cors: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    // The upstream's own CORS answer is replaced: the route's policy rules.
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        headers.remove(name);
    }
    vary_origin(headers);
    if !cors.allows_origin(origin.as_bytes()) {
        return;
    }
    allow_origin(cors, origin, headers);
    if let Some(v) = &cors.expose_headers_value {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: Option<Vec<&str>>, credentials: bool) -> Cors {
        Cors {
            allow_origins: origins.map(|o| o.into_iter().map(String::from).collect()),
            allow_methods: vec![Method::GET, Method::POST],
            allow_methods_value: HeaderValue::from_static("GET, POST"),
            allow_headers_value: Some(HeaderValue::from_static("Content-Type")),
            expose_headers_value: Some(HeaderValue::from_static("X-Total")),
            allow_credentials: credentials,
            max_age_value: HeaderValue::from_static("600"),
        }
    }

    #[test]
    fn preflight_echoes_an_allowed_origin_only() {
        let c = cors(Some(vec!["https://app.example.com"]), true);
        let ok = HeaderValue::from_static("https://app.example.com");
        let res = preflight_answer(&c, &ok, b"POST");
        assert_eq!(res.status(), 204);
        let h = res.headers();
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), &ok);
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).unwrap(), "true");
        assert_eq!(h.get(ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
        assert_eq!(h.get(header::VARY).unwrap(), "Origin");

        let evil = HeaderValue::from_static("https://evil.example.com");
        let res = preflight_answer(&c, &evil, b"POST");
        assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let res = preflight_answer(&c, &ok, b"DELETE");
        assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[test]
    fn actual_responses_replace_upstream_cors_headers() {
        let c = cors(None, false);
        let mut h = HeaderMap::new();
        h.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://other"),
        );
        decorate(&c, &HeaderValue::from_static("https://x.test"), &mut h);
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "*");
        assert_eq!(h.get(ACCESS_CONTROL_EXPOSE_HEADERS).unwrap(), "X-Total");
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }
}
