//! `kinglet-pi-kws`: streaming keyword spotting for a Raspberry Pi (or any Linux host).
//!
//! ```text
//! kinglet-pi-kws models/kws_gru/model.kgl clip1.wav clip2.wav
//! arecord -q -t raw -f S16_LE -r 16000 -c 1 | kinglet-pi-kws models/kws_gru/model.kgl -
//! ```
//!
//! The model file is memory-mapped and read in place. Audio goes through the runtime's
//! front-end one 20 ms hop at a time, each frame into `Session::step`; detections (the lines of
//! `kinglet kws --stream`) go to stdout as they happen, latency per hop to stderr.

use clap::Parser;
use kinglet_pi_kws::app::{run, Args};

fn main() {
    let args = Args::parse();
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    if let Err(e) = run(
        &args,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    ) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
