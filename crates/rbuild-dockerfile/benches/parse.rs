//! Parse benchmark: a generated 2,000-line Dockerfile mixing every instruction, continuation
//! lines, comments, heredocs and `--mount` flags. Target: well under 5 ms per parse.
//!
//! Run: `cargo bench -p rbuild-dockerfile --bench parse`

use criterion::{criterion_main, Criterion};
use rbuild_dockerfile::{parse, parse_syntax};
use std::fmt::Write;

/// About 2,000 physical lines in 50 stages of 40 lines each.
fn generate() -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:12 VERSION=1.0\n");
    for i in 0..50 {
        let _ = write!(
            s,
            "FROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{i}\n\
             LABEL org.example.stage=\"{i}\" org.example.version=$VERSION\n\
             ENV PATH=/opt/app{i}/bin:$PATH HOME=/home/app LANG=C.UTF-8\n\
             ARG TARGETARCH USER_ID=1000\n\
             # install packages\n\
             RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    \
                 --mount=type=bind,source=requirements.txt,target=/tmp/req.txt \\\n    \
                 apt-get update \\\n    \
                 && apt-get install -y --no-install-recommends curl ca-certificates \\\n    \
                 # a comment inside the continuation\n    \
                 && rm -rf /var/lib/apt/lists/*\n\
             WORKDIR /opt/app{i}\n\
             COPY --chown=$USER_ID:$USER_ID --chmod=0755 --link src/ ./src/\n\
             COPY --from=stage0 /opt/app0/bin/tool /usr/local/bin/tool{i}\n\
             ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a{i}.tar.gz /tmp/\n\
             COPY <<EOF /etc/app{i}.conf\n\
             [main]\n\
             name=stage{i}\n\
             home=$HOME\n\
             EOF\n\
             RUN <<-SCRIPT bash\n\
             \tset -eux\n\
             \techo building {i}\n\
             \tmake -j4 all\n\
             \tSCRIPT\n\
             RUN [\"/bin/sh\", \"-c\", \"echo exec form {i}\"]\n\
             EXPOSE 80{i:02}/tcp 9{i:03}/udp\n\
             VOLUME [\"/data{i}\", \"/logs{i}\"]\n\
             USER $USER_ID:$USER_ID\n\
             HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -f http://localhost/ || exit 1\n\
             STOPSIGNAL SIGTERM\n\
             SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n\
             ONBUILD COPY . /src\n\
             ENTRYPOINT [\"/usr/local/bin/tool{i}\"]\n\
             CMD [\"--serve\", \"--port=8080\"]\n\
             RUN echo one && \\\n    \
                 echo two && \\\n    \
                 echo three\n\
             ENV A{i}=\"quoted value\" B{i}='single quoted' C{i}=plain\\ escaped\n\
             \n"
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = generate();
    let lines = text.lines().count();
    assert!((1900..=2200).contains(&lines), "generated {lines} lines");
    parse(&text).expect("generated Dockerfile parses");
    let mut group = c.benchmark_group(format!("parse_{lines}_lines"));
    group.bench_function("syntax_pass", |b| {
        b.iter(|| parse_syntax(std::hint::black_box(&text)).unwrap())
    });
    group.bench_function("parse", |b| {
        b.iter(|| parse(std::hint::black_box(&text)).unwrap())
    });
    group.finish();
}

/// The criterion group; its generated function has no docs of its own.
mod group {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
