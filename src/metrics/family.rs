//! The kinds of metric families, each of which renders itself (its HELP
//! and TYPE lines and every sample): a counter or gauge, one per value of
//! a label (`Counters<L>`) or of two (`Counters2<A, B>`), and a latency
//! histogram. Labels are enums (`Label`), so a value that is not one
//! cannot be recorded, and every series is rendered from the start, at 0.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A bounded set of label values, in the order they are rendered.
pub trait Label: Copy + 'static {
    const NAME: &'static str;
    fn all() -> &'static [Self];
    fn as_str(self) -> &'static str;
    fn index(self) -> usize;
}

/// Declares a label enum and its `Label` impl from one list.
macro_rules! label {
    ($(#[$doc:meta])* $name:ident as $label:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $crate::metrics::family::Label for $name {
            const NAME: &'static str = $label;
            fn all() -> &'static [Self] {
                &[$($name::$variant),+]
            }
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use label;

/// Something that writes its part of the exposition.
pub trait Family: Sync {
    fn render(&self, out: &mut String);
}

/// The HELP and TYPE lines that open a family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One value: a counter (only goes up) or a gauge (set, or up and down).
pub struct Value {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Value {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: "counter",
            help,
            value: AtomicU64::new(0),
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: "gauge",
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// For gauges that go down again.
    pub fn dec(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl Family for Value {
    fn render(&self, out: &mut String) {
        header(out, self.name, self.kind, self.help);
        let _ = writeln!(out, "{} {}", self.name, self.get());
    }
}

/// A counter per value of one label.
pub struct Counters<L: Label> {
    name: &'static str,
    help: &'static str,
    values: Box<[AtomicU64]>,
    label: PhantomData<fn() -> L>,
}

impl<L: Label> Counters<L> {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            values: L::all().iter().map(|_| AtomicU64::new(0)).collect(),
            label: PhantomData,
        }
    }

    pub fn inc(&self, l: L) {
        self.add(l, 1);
    }

    pub fn add(&self, l: L, n: u64) {
        self.values[l.index()].fetch_add(n, Ordering::Relaxed);
    }
}

impl<L: Label> Family for Counters<L> {
    fn render(&self, out: &mut String) {
        header(out, self.name, "counter", self.help);
        for l in L::all() {
            let n = self.values[l.index()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{}{{{}=\"{}\"}} {n}", self.name, L::NAME, l.as_str());
        }
    }
}

/// A counter per pair of values of two labels.
pub struct Counters2<A: Label, B: Label> {
    name: &'static str,
    help: &'static str,
    values: Box<[AtomicU64]>,
    labels: PhantomData<fn() -> (A, B)>,
}

impl<A: Label, B: Label> Counters2<A, B> {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            values: (0..A::all().len() * B::all().len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            labels: PhantomData,
        }
    }

    pub fn inc(&self, a: A, b: B) {
        self.values[a.index() * B::all().len() + b.index()].fetch_add(1, Ordering::Relaxed);
    }
}

impl<A: Label, B: Label> Family for Counters2<A, B> {
    fn render(&self, out: &mut String) {
        header(out, self.name, "counter", self.help);
        for a in A::all() {
            for b in B::all() {
                let n = self.values[a.index() * B::all().len() + b.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}{{{}=\"{}\",{}=\"{}\"}} {n}",
                    self.name,
                    A::NAME,
                    a.as_str(),
                    B::NAME,
                    b.as_str()
                );
            }
        }
    }
}

/// Upper bounds (seconds) of the latency buckets: from a cached read on
/// loopback (~100 µs) to a slow commit on a busy disk.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram. Buckets are stored per bucket and summed when
/// rendered, so recording touches one bucket.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes `_bucket`, `_sum` and `_count` lines; `labels` is either empty
    /// or ends with a comma.
    pub fn render_samples(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let labels = match labels.trim_end_matches(',') {
            "" => String::new(),
            l => format!("{{{l}}}"),
        };
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {count}");
    }
}

/// A histogram with no labels, as a family of its own.
pub struct Latency {
    name: &'static str,
    help: &'static str,
    histogram: Histogram,
}

impl Latency {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            histogram: Histogram::default(),
        }
    }

    pub fn observe(&self, d: Duration) {
        self.histogram.observe(d);
    }
}

impl Family for Latency {
    fn render(&self, out: &mut String) {
        header(out, self.name, "histogram", self.help);
        self.histogram.render_samples(out, self.name, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    label!(
        /// For the tests.
        Fruit as "fruit" { Apple => "apple", Pear => "pear" }
    );

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render_samples(&mut out, "x", "a=\"b\",");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 100.00305"), "{out}");
    }

    #[test]
    fn every_label_value_is_rendered_from_the_start() {
        let c = Counters::<Fruit>::new("fruit_total", "Fruit.");
        c.add(Fruit::Pear, 2);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP fruit_total Fruit.\n# TYPE fruit_total counter\n\
             fruit_total{fruit=\"apple\"} 0\nfruit_total{fruit=\"pear\"} 2\n"
        );
        let c = Counters2::<Fruit, Fruit>::new("pairs_total", "Pairs.");
        c.inc(Fruit::Apple, Fruit::Pear);
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains("pairs_total{fruit=\"apple\",fruit=\"pear\"} 1\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 2 + 4);
    }
}
