use super::*;

#[test]
fn buckets_are_contiguous_and_ordered() {
    let mut last = 0;
    for ns in [
        0u64,
        1,
        7,
        8,
        9,
        15,
        16,
        17,
        1000,
        1_000_000,
        1 << 40,
        1 << 47,
        (1 << 48) - 1,
    ] {
        let index = bucket(ns);
        assert!(index >= last, "{ns} ns went to {index}, before {last}");
        last = index;
    }
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    for index in 0..BUCKETS {
        assert_eq!(bucket(bucket_middle(index)), index);
    }
}

#[test]
fn a_bucket_middle_is_within_a_sixteenth_of_any_value_in_it() {
    for ns in (8..20_000_000u64).step_by(9973) {
        let middle = bucket_middle(bucket(ns)) as f64;
        assert!(
            (middle - ns as f64).abs() <= ns as f64 / 16.0,
            "{ns} -> {middle}"
        );
    }
}

#[test]
fn an_empty_histogram_summarizes_to_nothing() {
    assert_eq!(
        Histogram::summarize([&Histogram::default()]),
        Summary::default()
    );
}

#[test]
fn the_summary_has_exact_count_mean_and_max_and_close_percentiles() {
    let histogram = Histogram::default();
    for ms in 1..=100u64 {
        histogram.record(Duration::from_millis(ms), 1);
    }
    let summary = Histogram::summarize([&histogram]);
    assert_eq!(summary.count, 100);
    assert_eq!(summary.mean, Duration::from_micros(50_500));
    assert_eq!(summary.max, Duration::from_millis(100));
    let near = |got: Duration, want: f64| (got.as_secs_f64() - want).abs() <= want / 16.0;
    assert!(near(summary.p50, 0.050), "{:?}", summary.p50);
    assert!(near(summary.p99, 0.099), "{:?}", summary.p99);
}

#[test]
fn weights_count_as_that_many_samples() {
    let histogram = Histogram::default();
    histogram.record(Duration::from_micros(1), 63);
    histogram.record(Duration::from_millis(1), 1);
    let summary = Histogram::summarize([&histogram]);
    assert_eq!(summary.count, 64);
    assert!(summary.p50 < Duration::from_micros(2));
    assert_eq!(summary.max, Duration::from_millis(1));
}

#[test]
fn histograms_summarize_together_and_absorb_each_other() {
    let (a, b) = (Histogram::default(), Histogram::default());
    a.record(Duration::from_millis(1), 1);
    b.record(Duration::from_millis(3), 1);
    let together = Histogram::summarize([&a, &b]);
    assert_eq!(
        (together.count, together.mean),
        (2, Duration::from_millis(2))
    );
    a.absorb(&b);
    assert_eq!(Histogram::summarize([&a]), together);
}

#[test]
fn a_percentile_never_exceeds_the_maximum() {
    let histogram = Histogram::default();
    histogram.record(Duration::from_nanos(1_000_001), 1);
    let summary = Histogram::summarize([&histogram]);
    assert_eq!(summary.p99, summary.max);
}

#[test]
fn slow_events_are_all_timed() {
    let mut sampler = Sampler::default();
    let mut now = Instant::now();
    for _ in 0..10 {
        assert_eq!(sampler.due(), Some(1));
        now += SAMPLE_SPACING * 2;
        sampler.timed(now);
    }
}

#[test]
fn fast_events_are_sampled_with_their_weight() {
    let mut sampler = Sampler::default();
    let mut now = Instant::now();
    for _ in 0..SAMPLER_WARMUP {
        assert_eq!(sampler.due(), Some(1));
        now += Duration::from_nanos(100);
        sampler.timed(now);
    }
    let mut counted = 0u64;
    let mut timed = 0u64;
    for _ in 0..10_000 {
        now += Duration::from_nanos(100);
        if let Some(weight) = sampler.due() {
            counted += u64::from(weight);
            timed += 1;
            sampler.timed(now);
        }
    }
    // Every event is stood for by a timed one, but those since the last one timed.
    let since_last = u64::from(sampler.every - sampler.left);
    assert_eq!(counted + since_last, 10_000);
    assert!(timed < 10_000 / 32, "{timed} of 10000 timed");
    assert_eq!(sampler.every, MAX_SAMPLE_EVERY);
}
