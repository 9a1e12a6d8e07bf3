//! Streaming front-end: audio arrives in chunks of any size, frames leave one hop at a time.

use super::{LogMel, BANDS, HOP, WINDOW};

/// Streaming log-mel extractor.
///
/// Feed it audio in chunks of any length (a DMA half-buffer, a single sample); it keeps the
/// last 480 samples and calls back with a frame each time a hop completes: the first frame
/// after 480 samples, then one every 320. The frames are bit-identical to [`LogMel::clip`]
/// over the concatenated audio, whatever the chunking.
///
/// ```
/// use kinglet::frontend::Streamer;
/// let mut s = Streamer::new();
/// let mut frames = 0;
/// for _ in 0..100 {
///     s.push(&[0i16; 160], |_frame| frames += 1); // 10 ms per call
/// }
/// assert_eq!(frames, 49); // 1 s of audio
/// ```
#[derive(Clone, Debug)]
pub struct Streamer {
    logmel: LogMel,
    /// The most recent samples, oldest first; `history[..filled]` is valid.
    history: [i16; WINDOW],
    filled: usize,
    frame: [f32; BANDS],
}

impl Default for Streamer {
    fn default() -> Self {
        Self::new()
    }
}

impl Streamer {
    /// A streamer with fresh tables and no history.
    pub fn new() -> Self {
        Self::with_logmel(LogMel::new())
    }

    /// All-zero state, for a `static` (in `.bss`); call [`init`](Self::init) before use.
    pub const fn zeroed() -> Self {
        Streamer {
            logmel: LogMel::zeroed(),
            history: [0; WINDOW],
            filled: 0,
            frame: [0.0; BANDS],
        }
    }

    /// Computes the tables in place and forgets any audio: afterwards `self` behaves exactly
    /// like [`Streamer::new`], without that 7 KB value built on the stack first.
    pub fn init(&mut self) {
        self.logmel.init();
        self.reset();
    }

    /// A streamer reusing already computed tables.
    pub fn with_logmel(logmel: LogMel) -> Self {
        Streamer {
            logmel,
            history: [0; WINDOW],
            filled: 0,
            frame: [0.0; BANDS],
        }
    }

    /// Forgets the buffered audio; the next frame comes after 480 new samples.
    pub fn reset(&mut self) {
        self.filled = 0;
    }

    /// Samples still needed before the next frame is emitted.
    pub fn samples_to_next_frame(&self) -> usize {
        WINDOW - self.filled
    }

    /// Appends `samples` and calls `on_frame` once for every frame they complete, in order.
    pub fn push(&mut self, samples: &[i16], mut on_frame: impl FnMut(&[f32; BANDS])) {
        let mut rest = samples;
        while !rest.is_empty() {
            // `filled < WINDOW` here; `get_mut` and `zip` keep the copy free of panic paths.
            let free = self.history.get_mut(self.filled..).unwrap_or_default();
            let take = free.len().min(rest.len());
            for (d, &s) in free.iter_mut().zip(rest) {
                *d = s;
            }
            self.filled += take;
            rest = rest.get(take..).unwrap_or_default();
            if self.filled == WINDOW {
                self.logmel.frame(&self.history, &mut self.frame);
                on_frame(&self.frame);
                // Keep the 160-sample overlap with the next window.
                self.history.copy_within(HOP.., 0);
                self.filled = WINDOW - HOP;
            }
        }
    }
}
