//! What the gateway says to browsers: the paths it answers itself
//! (`/oauth2/*`), its cookies (the session id, and the login cookie that
//! binds a login to the browser that started it), redirects, and which
//! redirect targets are safe. Read on every request to a session route
//! (the cookie), so the cookie parser works on bytes.

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse};

use crate::settings::SessionSettings;

/// The paths the gateway answers itself when auth is configured.
pub const ENDPOINTS: [&str; 4] = [
    "/oauth2/login",
    "/oauth2/callback",
    "/oauth2/logout",
    "/oauth2/userinfo",
];

/// A browser navigating (not an API client): it takes a redirect.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub fn cookie_of<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .find_map(|v| cookie_value(v.as_bytes(), name))
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`).
///
/// Works on bytes and checks only the value it returns: it runs on every
/// request to a session route, and validating the whole header as text
/// cost more than the session lookup.
pub fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h str> {
    let name = name.as_bytes();
    let value = cookie_pairs(header).find_map(|pair| {
        pair.trim_ascii_start()
            .strip_prefix(name)?
            .strip_prefix(b"=")
    })?;
    let value = value.trim_ascii_end();
    // Visible ASCII only, as a header value's `to_str` requires; checked
    // without an early exit, so that it is vectorised.
    let visible = value
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x7f - 0x21));
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// The `;`-separated parts of a `Cookie` header (untrimmed), found with
/// `memchr`: this runs on every request that carries cookies, and a
/// byte-by-byte split cost about 1,000 instructions for one session cookie.
pub fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// A `Set-Cookie` value for one of the gateway's cookies (`max_age` 0
/// clears it).
pub fn set_cookie(session: &SessionSettings, name: &str, value: &str, max_age: u64) -> String {
    format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        name,
        value,
        max_age,
        if session.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The login cookie's name for a session cookie named `session_cookie`:
/// it ties a login's state to the browser that started it.
pub fn login_cookie_for(session_cookie: &str) -> String {
    format!("{session_cookie}_login")
}

/// A 302 to `location`, never cached.
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The redirect that sends a browser to log in and come back to
/// `path_and_query` afterwards.
pub fn login_redirect(path_and_query: &str) -> HttpResponse {
    let rd: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    redirect(&format!("/oauth2/login?rd={rd}"))
}

/// Where the browser may be sent after login or logout: a relative path on
/// this gateway, or an absolute URL on one of `allowed_hosts`.
pub fn safe_redirect(rd: Option<&str>, allowed_hosts: &[String]) -> Option<String> {
    let rd = match rd {
        None | Some("") => return Some("/".to_owned()),
        Some(rd) => rd,
    };
    // Browsers drop tabs and newlines from URLs and read '\' as '/', so
    // "/\t/evil" would become "//evil": refuse them outright.
    if rd
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    // "//evil" and "/\evil" are protocol-relative to browsers.
    if rd.starts_with('/') && !rd.starts_with("//") && !rd.starts_with("/\\") {
        return Some(rd.to_owned());
    }
    let url = url::Url::parse(rd).ok()?;
    let host = url.host_str()?;
    let allowed = matches!(url.scheme(), "http" | "https")
        && allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    allowed.then(|| rd.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        fn find(header: &str) -> Option<&str> {
            cookie_value(header.as_bytes(), "gateway_session")
        }
        assert_eq!(find("gateway_session=abc"), Some("abc"));
        assert_eq!(find("a=1; gateway_session=abc; b=2"), Some("abc"));
        assert_eq!(find("a=1;gateway_session=abc"), Some("abc"));
        assert_eq!(find("  gateway_session=abc  "), Some("abc"));
        assert_eq!(find("gateway_session="), Some(""));
        // Longer names that start with ours, and ours only as a value.
        assert_eq!(find("gateway_session_login=x; y=gateway_session"), None);
        assert_eq!(find("gateway_sessio=x"), None);
        assert_eq!(find(""), None);
        // A value that could not be a header value's text is no cookie.
        assert_eq!(find("gateway_session=a\u{7f}b"), None);
        assert_eq!(
            cookie_value(b"gateway_session=\xc3\xa9", "gateway_session"),
            None
        );
    }

    #[test]
    fn open_redirects_are_refused() {
        let allowed = vec!["app.example.com".to_owned()];
        assert_eq!(safe_redirect(None, &allowed).as_deref(), Some("/"));
        assert_eq!(
            safe_redirect(Some("/x?y=1"), &allowed).as_deref(),
            Some("/x?y=1")
        );
        assert_eq!(
            safe_redirect(Some("https://APP.example.com/p"), &allowed).as_deref(),
            Some("https://APP.example.com/p")
        );
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "https://app.example.com.evil.example/",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_redirect(Some(bad), &allowed), None, "{bad}");
        }
    }

    #[test]
    fn login_redirect_brings_the_browser_back() {
        let res = login_redirect("/app/x?y=1&z=2");
        assert_eq!(res.status(), 302);
        assert_eq!(
            res.headers().get(header::LOCATION).unwrap(),
            "/oauth2/login?rd=%2Fapp%2Fx%3Fy%3D1%26z%3D2"
        );
    }
}
