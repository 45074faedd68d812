//! Criterion benchmarks of herald's hot paths.
use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("message_id_derive", |b| {
        let job = herald::domain::JobId::generate();
        b.iter(|| herald::domain::MessageId::derive(&job, "c000001", herald::domain::Channel::Sms))
    });
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
