//! Route lookup cost against the number of routes (part of `make bench`).
//!
//! Builds tables of 10, 1,000 and 10,000 routes and times lookups of a
//! deep hit, a miss and a root fallback. The trie costs one hash probe per
//! path segment, so the time per lookup should not grow with the route count.

use std::hint::black_box;
use std::time::Instant;

use actix_web::http::Method;
use gateway::settings::RouteSettings;
use gateway::tools::RouteTable;

fn table(n: usize) -> RouteTable {
    let mut routes: Vec<RouteSettings> = (0..n)
        .map(|i| RouteSettings::prefix_only(&format!("r{i}"), &format!("/svc{i}/v1")))
        .collect();
    routes.push(RouteSettings::prefix_only("root", "/"));
    RouteTable::new(routes)
}

fn median_ns_per_lookup(t: &RouteTable, path: &str) -> f64 {
    const LOOKUPS: u32 = 200_000;
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..LOOKUPS {
                black_box(t.find(black_box(None), &Method::GET, black_box(path)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(LOOKUPS)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    println!("route lookup, median ns per lookup (7 runs x 200k lookups)");
    println!(
        "{:>8} {:>14} {:>14} {:>14}",
        "routes", "deep hit", "miss->root", "short hit"
    );
    let mut first = None;
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        let last = format!("/svc{}/v1/items/42/details", n - 1);
        let hit = median_ns_per_lookup(&t, &last);
        let miss = median_ns_per_lookup(&t, "/nowhere/at/all");
        let short = median_ns_per_lookup(&t, "/svc3/v1");
        println!("{n:>8} {hit:>14.1} {miss:>14.1} {short:>14.1}");
        first.get_or_insert(hit);
        if n == 10_000 {
            let ratio = hit / first.unwrap_or(hit);
            println!("RESULT route_lookup_10000_vs_10_ratio={ratio:.2}");
        }
    }
}
