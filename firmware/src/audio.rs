//! The microphone, behind a small trait, so the kws app runs the same code on audio from flash
//! (QEMU, CI) and from a real microphone (a board).
//!
//! # On a board: I2S or PDM
//!
//! A board implementation owns the peripheral and its DMA ring, and `read` copies out the
//! samples that have arrived, blocking (`wfi`) until `buf` is full. For example, on the
//! Nucleo-F446RE with an I2S MEMS microphone (e.g. an INMP441 on SPI2/I2S2: `PB10` CK, `PB12`
//! WS, `PC3` SD, left channel), with `stm32f4xx-hal`'s `I2s` in master-receive mode at 16 kHz,
//! 24-bit samples in 32-bit frames, DMA1 stream 3 into a circular buffer of two 320-sample
//! halves:
//!
//! ```ignore
//! impl AudioSource for I2sMic {
//!     type Error = Overrun;
//!     fn read(&mut self, buf: &mut [i16]) -> Result<usize, Overrun> {
//!         for s in buf.iter_mut() {
//!             // Next 32-bit word from the DMA ring (waits for the half-transfer interrupt);
//!             // the microphone's 24 significant bits are the top of the word.
//!             let word = self.ring.next_blocking()?;
//!             *s = (word >> 16) as i16;
//!         }
//!         Ok(buf.len())
//!     }
//! }
//! ```
//!
//! A PDM microphone (nRF52840's PDM peripheral, which decimates in hardware to 16 kHz i16) is
//! simpler still: its EasyDMA writes i16 samples directly. Neither is wired up in this
//! repository (it has no board to test on); the trait is what the app needs.

use core::convert::Infallible;

/// A source of 16 kHz mono 16-bit PCM.
pub trait AudioSource {
    /// What can go wrong (a DMA overrun, a bus error).
    type Error;
    /// Fills `buf` with the next samples and returns how many it wrote: `buf.len()`, fewer
    /// only at the end of a finite stream, 0 once it has ended.
    fn read(&mut self, buf: &mut [i16]) -> Result<usize, Self::Error>;
}

/// A clip in flash: little-endian i16 samples (converted from WAV at build time).
#[derive(Clone, Debug)]
pub struct FlashClip {
    pcm: &'static [u8],
    pos: usize,
}

impl FlashClip {
    /// The clip in `pcm` (2 bytes per sample, little-endian; a trailing odd byte is ignored).
    pub fn new(pcm: &'static [u8]) -> Self {
        FlashClip { pcm, pos: 0 }
    }

    /// Samples in the clip.
    pub fn samples(&self) -> usize {
        self.pcm.len() / 2
    }
}

impl AudioSource for FlashClip {
    type Error = Infallible;

    fn read(&mut self, buf: &mut [i16]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.samples() - self.pos);
        let bytes = &self.pcm[2 * self.pos..2 * (self.pos + n)];
        for (s, b) in buf.iter_mut().zip(bytes.chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        self.pos += n;
        Ok(n)
    }
}
