//! A replay I2C bus: an [`embedded_hal::i2c::I2c`] that answers like a TMP117 (TI, register map
//! in the `tmp117` driver's docs) whose one-shot conversions return committed values, so the
//! forecast app reads real ETTh1 oil temperatures through the real driver under QEMU.
//!
//! It models what the driver relies on: the pointer register, `Configuration` writes (a write
//! with `MOD = 11` starts a one-shot conversion that takes the next committed value),
//! `Data_Ready` set after [`CONVERSION_POLLS`] reads of `Configuration` and cleared by reading
//! `Configuration` or `Temp_Result`, `MOD` back to shutdown (`01`) after the conversion, the
//! `Device_ID` register, and a NACK on any other address.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

/// Reads of `Configuration` that find the conversion still running before `Data_Ready` is set.
pub const CONVERSION_POLLS: u8 = 1;

/// Replay bus errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Nothing answers at this address.
    NoDevice,
    /// A one-shot conversion was started after the last committed value.
    Exhausted,
    /// A transfer the TMP117 would not accept (no pointer byte, a 1-byte data write).
    Malformed,
}

impl embedded_hal::i2c::Error for ReplayError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplayError::NoDevice => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            ReplayError::Exhausted | ReplayError::Malformed => ErrorKind::Other,
        }
    }
}

/// A TMP117 at `address` replaying `Temp_Result` values (little-endian i16 in flash).
#[derive(Debug)]
pub struct ReplayTmp117 {
    address: u8,
    values: &'static [u8],
    next: usize,
    pointer: u8,
    config: u16,
    result: u16,
    /// Configuration reads left before the running conversion completes; `None` when idle.
    converting: Option<u8>,
}

const DATA_READY: u16 = 1 << 13;
const MOD_MASK: u16 = 0b11 << 10;
const MOD_ONE_SHOT: u16 = 0b11 << 10;
const MOD_SHUTDOWN: u16 = 0b01 << 10;

impl ReplayTmp117 {
    /// A sensor at the 7-bit `address` whose conversions return `values` in order.
    pub fn new(address: u8, values: &'static [u8]) -> Self {
        ReplayTmp117 {
            address,
            values,
            next: 0,
            pointer: 0,
            config: 0x0220,
            result: 0x8000,
            converting: None,
        }
    }

    /// Conversions still available.
    pub fn remaining(&self) -> usize {
        self.values.len() / 2 - self.next
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ReplayError> {
        let (&pointer, data) = bytes.split_first().ok_or(ReplayError::Malformed)?;
        self.pointer = pointer;
        match data {
            [] => Ok(()),
            [msb, lsb] if pointer == 0x01 => {
                let value = u16::from_be_bytes([*msb, *lsb]);
                // Flags (15:12) are read-only; Soft_Reset (bit 1) reads back 0.
                self.config = (self.config & 0xF000) | (value & 0x0FFC);
                if value & MOD_MASK == MOD_ONE_SHOT {
                    if self.remaining() == 0 {
                        return Err(ReplayError::Exhausted);
                    }
                    let b = &self.values[2 * self.next..2 * self.next + 2];
                    self.next += 1;
                    self.result = i16::from_le_bytes([b[0], b[1]]) as u16;
                    self.config &= !DATA_READY;
                    self.converting = Some(CONVERSION_POLLS);
                }
                Ok(())
            }
            [_, _] => Ok(()), // limits, offset, EEPROM: accepted, not modelled
            _ => Err(ReplayError::Malformed),
        }
    }

    fn register(&mut self) -> u16 {
        match self.pointer {
            0x00 => {
                self.config &= !DATA_READY;
                self.result
            }
            0x01 => {
                if let Some(left) = self.converting {
                    if left == 0 {
                        self.converting = None;
                        self.config = (self.config & !MOD_MASK) | MOD_SHUTDOWN | DATA_READY;
                    } else {
                        self.converting = Some(left - 1);
                    }
                }
                let v = self.config;
                self.config &= !DATA_READY;
                v
            }
            0x0F => 0x0117,
            _ => 0,
        }
    }
}

impl ErrorType for ReplayTmp117 {
    type Error = ReplayError;
}

impl I2c for ReplayTmp117 {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), ReplayError> {
        if address != self.address {
            return Err(ReplayError::NoDevice);
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => self.write(bytes)?,
                Operation::Read(buf) => {
                    // Registers auto-repeat MSB, LSB.
                    let [msb, lsb] = self.register().to_be_bytes();
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = if i % 2 == 0 { msb } else { lsb };
                    }
                }
            }
        }
        Ok(())
    }
}
