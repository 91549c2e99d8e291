//! Parse + plan of a generated 2,000-line Dockerfile (issue 2's target: under 5 ms).
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rbuild_plan::{plan, OfflineResolver, PlanOptions};
use std::fmt::Write;

/// A Dockerfile of about `lines` lines mixing every instruction, continuations, heredocs,
/// mounts and variable expansion over several stages.
fn generate(lines: usize) -> String {
    let mut text =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=busybox\nARG VERSION=1.0\n");
    let mut stage = 0;
    while text.lines().count() < lines {
        let _ = write!(
            text,
            "FROM ${{BASE}}:latest AS stage{stage}\n\
             ARG VERSION\n\
             ENV APP_HOME=/opt/app{stage} PATH=/opt/app{stage}/bin:$PATH\n\
             LABEL org.example.version=\"$VERSION\" org.example.stage=\"{stage}\"\n\
             WORKDIR $APP_HOME\n\
             COPY --chown=1000:1000 --chmod=0644 src/{stage}/ ./src/\n\
             RUN --mount=type=cache,target=/root/.cache,id=c{stage} \\\n    \
             set -eux; \\\n    \
             echo building stage {stage} version $VERSION; \\\n    \
             mkdir -p out && touch out/{stage}\n\
             RUN <<EOF\n\
             echo heredoc {stage}\n\
             echo ${{APP_HOME:-/tmp}}\n\
             EOF\n\
             EXPOSE 80{stage:02}/tcp\n\
             USER 1000:1000\n\
             HEALTHCHECK --interval=30s --timeout=3s CMD [\"true\"]\n\
             CMD [\"/opt/app/bin/run\", \"--stage\", \"{stage}\"]\n"
        );
        if stage > 0 {
            let _ = writeln!(
                text,
                "COPY --from=stage{} /opt/app{}/out /prev/",
                stage - 1,
                stage - 1
            );
        }
        stage += 1;
    }
    text
}

fn parse_plan(c: &mut Criterion) {
    let text = generate(2_000);
    assert!(text.lines().count() >= 2_000);
    let options = PlanOptions::default();
    c.bench_function("parse only 2000-line Dockerfile", |b| {
        b.iter(|| rbuild_dockerfile::parse(black_box(&text)).expect("parses"))
    });
    c.bench_function("parse+plan 2000-line Dockerfile", |b| {
        b.iter(|| {
            let dockerfile = rbuild_dockerfile::parse(black_box(&text)).expect("parses");
            plan(&dockerfile, &options, &OfflineResolver).expect("plans")
        })
    });
}

criterion_group!(benches, parse_plan);
criterion_main!(benches);
