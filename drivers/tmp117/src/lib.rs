//! `no_std` driver for the Texas Instruments **TMP117** digital temperature sensor (±0.1 °C,
//! 16-bit, I2C), generic over [`embedded_hal::i2c::I2c`] (embedded-hal 1.0). No allocator, no
//! floating point unless you ask for [`Temperature::celsius`].
//!
//! # The sensor, as this driver uses it (TMP117 datasheet, SNOSD82, "Register Map")
//!
//! | pointer | register | reset | access |
//! |---|---|---|---|
//! | `0x00` | `Temp_Result`: two's complement, 1 LSB = 7.8125 m°C (1/128 °C) | `0x8000` (-256 °C, until the first conversion) | R |
//! | `0x01` | `Configuration` (fields below) | `0x0220` | R/W |
//! | `0x02` | `THigh_Limit` | `0x6000` (192 °C) | R/W |
//! | `0x03` | `TLow_Limit` | `0x8000` (-256 °C) | R/W |
//! | `0x04` | `EEPROM_UL` (bit 15 unlocks the EEPROM) | `0x0000` | R/W |
//! | `0x05`, `0x06`, `0x08` | `EEPROM1..3` (user scratch) | | R/W |
//! | `0x07` | `Temp_Offset`: same format as `Temp_Result`, added to every result | `0x0000` | R/W |
//! | `0x0F` | `Device_ID`: bits 15:12 revision, bits 11:0 = `0x117` | `0x0117` | R |
//!
//! `Configuration`: bit 15 `HIGH_Alert`, 14 `LOW_Alert`, 13 `Data_Ready`, 12 `EEPROM_Busy`,
//! 11:10 `MOD` (00 continuous, 01 shutdown, 10 continuous, 11 one-shot), 9:7 `CONV` (standby
//! time between continuous conversions), 6:5 `AVG` (00 none, 01 8, 10 32, 11 64 samples), 4
//! `T/nA` (alert vs therm mode), 3 `POL`, 2 `DR/Alert`, 1 `Soft_Reset`, 0 reserved.
//! Reading `Configuration` or `Temp_Result` clears `Data_Ready`.
//!
//! On the bus every register is 16 bits, most significant byte first. A read is a write of
//! the pointer byte followed by a repeated-start read of two bytes
//! ([`I2c::write_read`]); a write sends the pointer and the two bytes in one transfer. The
//! 7-bit address is `0x48` to `0x4B`, set by the `ADD0` pin ([`Address`]).
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//! use tmp117::{Address, Averaging, Tmp117};
//! # let bus = Mock::new(&[
//! #     Transaction::write_read(0x48, vec![0x0F], vec![0x01, 0x17]),
//! #     Transaction::write(0x48, vec![0x01, 0x0E, 0x20]),
//! #     Transaction::write_read(0x48, vec![0x01], vec![0x26, 0x20]),
//! #     Transaction::write_read(0x48, vec![0x00], vec![0x0C, 0x80]),
//! # ]);
//! let mut sensor = Tmp117::new(bus, Address::Gnd);
//! sensor.check_device_id()?;
//! let t = sensor.one_shot(Averaging::X8, &mut embedded_hal_mock::eh1::delay::NoopDelay)?;
//! assert_eq!(t.millicelsius(), 25_000); // 0x0C80 = 3200 / 128 °C
//! # sensor.release().done();
//! # Ok::<(), tmp117::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```
#![no_std]
#![deny(missing_docs)]

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// Register pointers (datasheet register map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Register {
    /// Temperature result (read only).
    TempResult = 0x00,
    /// Configuration.
    Configuration = 0x01,
    /// High alert limit.
    THighLimit = 0x02,
    /// Low alert limit.
    TLowLimit = 0x03,
    /// EEPROM unlock.
    EepromUnlock = 0x04,
    /// User EEPROM word 1.
    Eeprom1 = 0x05,
    /// User EEPROM word 2.
    Eeprom2 = 0x06,
    /// Temperature offset, added to every result.
    TempOffset = 0x07,
    /// User EEPROM word 3.
    Eeprom3 = 0x08,
    /// Device ID and revision (read only).
    DeviceId = 0x0F,
}

impl Register {
    /// Whether the host may write this register.
    pub const fn is_writable(self) -> bool {
        !matches!(self, Register::TempResult | Register::DeviceId)
    }
}

/// The 7-bit I2C address, chosen by what the `ADD0` pin is tied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// `ADD0` to GND: `0x48`.
    Gnd,
    /// `ADD0` to V+: `0x49`.
    Vplus,
    /// `ADD0` to SDA: `0x4A`.
    Sda,
    /// `ADD0` to SCL: `0x4B`.
    Scl,
}

impl Address {
    /// The 7-bit address.
    pub const fn bits(self) -> u8 {
        match self {
            Address::Gnd => 0x48,
            Address::Vplus => 0x49,
            Address::Sda => 0x4A,
            Address::Scl => 0x4B,
        }
    }
}

/// The 12-bit device ID in `Device_ID[11:0]`.
pub const DEVICE_ID: u16 = 0x117;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus reported an error.
    I2c(E),
    /// The device at the address is not a TMP117: `Device_ID` read back as `id`.
    WrongDevice {
        /// The whole `Device_ID` register as read.
        id: u16,
    },
    /// [`Tmp117::write_register`] on a read-only register.
    ReadOnly(Register),
    /// A one-shot conversion did not report `Data_Ready` within twice its nominal time.
    Timeout,
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Error::I2c(e)
    }
}

/// Conversion mode (`MOD`, Configuration bits 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Continuous conversion (`00`; `10` reads back as this too).
    Continuous,
    /// Shutdown (`01`).
    Shutdown,
    /// One conversion, then shutdown (`11`).
    OneShot,
}

/// Samples averaged per conversion (`AVG`, Configuration bits 6:5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Averaging {
    /// No averaging: 15.5 ms per conversion.
    None = 0,
    /// 8 samples: 125 ms (the reset default).
    X8 = 1,
    /// 32 samples: 500 ms.
    X32 = 2,
    /// 64 samples: 1 s.
    X64 = 3,
}

impl Averaging {
    /// Nominal time of one conversion (datasheet "Conversion Cycle Time"), in microseconds.
    pub const fn conversion_us(self) -> u32 {
        match self {
            Averaging::None => 15_500,
            Averaging::X8 => 125_000,
            Averaging::X32 => 500_000,
            Averaging::X64 => 1_000_000,
        }
    }
}

/// The `Configuration` register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config(pub u16);

impl Config {
    /// Power-on value.
    pub const RESET: Config = Config(0x0220);
    const HIGH_ALERT: u16 = 1 << 15;
    const LOW_ALERT: u16 = 1 << 14;
    const DATA_READY: u16 = 1 << 13;
    const EEPROM_BUSY: u16 = 1 << 12;
    const MOD_SHIFT: u16 = 10;
    const AVG_SHIFT: u16 = 5;
    /// Writing this bit resets the device (it reads back as 0).
    pub const SOFT_RESET: u16 = 1 << 1;

    /// `Data_Ready`: a conversion finished since the last read of this register or the result.
    pub const fn data_ready(self) -> bool {
        self.0 & Self::DATA_READY != 0
    }
    /// `HIGH_Alert` flag.
    pub const fn high_alert(self) -> bool {
        self.0 & Self::HIGH_ALERT != 0
    }
    /// `LOW_Alert` flag.
    pub const fn low_alert(self) -> bool {
        self.0 & Self::LOW_ALERT != 0
    }
    /// `EEPROM_Busy` flag.
    pub const fn eeprom_busy(self) -> bool {
        self.0 & Self::EEPROM_BUSY != 0
    }
    /// Conversion mode.
    pub const fn mode(self) -> Mode {
        match (self.0 >> Self::MOD_SHIFT) & 0b11 {
            0b01 => Mode::Shutdown,
            0b11 => Mode::OneShot,
            _ => Mode::Continuous,
        }
    }
    /// Averaging.
    pub const fn averaging(self) -> Averaging {
        match (self.0 >> Self::AVG_SHIFT) & 0b11 {
            0 => Averaging::None,
            1 => Averaging::X8,
            2 => Averaging::X32,
            _ => Averaging::X64,
        }
    }
    /// `CONV` field (bits 9:7), the standby time code of continuous mode.
    pub const fn conversion_cycle(self) -> u8 {
        ((self.0 >> 7) & 0b111) as u8
    }
    /// The same configuration with another mode. The read-only flags (bits 15:12) are cleared:
    /// they mean nothing when written.
    pub const fn with_mode(self, mode: Mode) -> Config {
        let bits = match mode {
            Mode::Continuous => 0b00,
            Mode::Shutdown => 0b01,
            Mode::OneShot => 0b11,
        };
        Config((self.0 & !(0b11 << Self::MOD_SHIFT) & 0x0FFF) | (bits << Self::MOD_SHIFT))
    }
    /// The same configuration with another averaging (read-only flags cleared).
    pub const fn with_averaging(self, avg: Averaging) -> Config {
        Config((self.0 & !(0b11 << Self::AVG_SHIFT) & 0x0FFF) | ((avg as u16) << Self::AVG_SHIFT))
    }
}

/// A temperature in the sensor's own format: two's complement, 1 LSB = 1/128 °C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Temperature(pub i16);

impl Temperature {
    /// The raw register value.
    pub const fn raw(self) -> i16 {
        self.0
    }

    /// Milli-degrees Celsius, rounded to nearest (ties away from zero): `raw * 1000 / 128`.
    pub const fn millicelsius(self) -> i32 {
        let x = self.0 as i32 * 125; // * 1000 / 128 = * 125 / 16
        if x >= 0 {
            (x + 8) / 16
        } else {
            (x - 8) / 16
        }
    }

    /// Degrees Celsius, exactly (`raw / 128` is exact in `f32`).
    pub fn celsius(self) -> f32 {
        self.0 as f32 / 128.0
    }

    /// The nearest representable temperature to `millicelsius` (ties away from zero),
    /// saturating at the format's range (-256 °C to +255.99 °C).
    pub const fn from_millicelsius(millicelsius: i32) -> Temperature {
        let x = millicelsius as i64 * 16; // * 128 / 1000 = * 16 / 125
        let r = if x >= 0 {
            (x + 62) / 125
        } else {
            (x - 62) / 125
        };
        let r = if r > i16::MAX as i64 {
            i16::MAX
        } else if r < i16::MIN as i64 {
            i16::MIN
        } else {
            r as i16
        };
        Temperature(r)
    }
}

/// A TMP117 on an I2C bus.
#[derive(Debug)]
pub struct Tmp117<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Tmp117<I2C> {
    /// A driver for the sensor at `address` on `i2c`. Does not touch the bus.
    pub fn new(i2c: I2C, address: Address) -> Self {
        Tmp117 {
            i2c,
            address: address.bits(),
        }
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }

    /// Reads a register: pointer byte out, two bytes (MSB first) back.
    pub fn read_register(&mut self, reg: Register) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c.write_read(self.address, &[reg as u8], &mut buf)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// Writes a register: pointer byte then the value, MSB first, in one transfer.
    pub fn write_register(&mut self, reg: Register, value: u16) -> Result<(), Error<I2C::Error>> {
        if !reg.is_writable() {
            return Err(Error::ReadOnly(reg));
        }
        let [msb, lsb] = value.to_be_bytes();
        self.i2c.write(self.address, &[reg as u8, msb, lsb])?;
        Ok(())
    }

    /// Reads `Device_ID` and checks it is a TMP117; returns the silicon revision (bits 15:12).
    pub fn check_device_id(&mut self) -> Result<u8, Error<I2C::Error>> {
        let id = self.read_register(Register::DeviceId)?;
        if id & 0x0FFF != DEVICE_ID {
            return Err(Error::WrongDevice { id });
        }
        Ok((id >> 12) as u8)
    }

    /// Reads `Configuration` (this clears `Data_Ready` in the device).
    pub fn config(&mut self) -> Result<Config, Error<I2C::Error>> {
        Ok(Config(self.read_register(Register::Configuration)?))
    }

    /// Writes `Configuration`.
    pub fn set_config(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        self.write_register(Register::Configuration, config.0)
    }

    /// Soft reset: the device reloads its EEPROM defaults (takes 2 ms).
    pub fn soft_reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_register(Register::Configuration, Config::SOFT_RESET)
    }

    /// Reads `Temp_Result` (this clears `Data_Ready`).
    pub fn temperature(&mut self) -> Result<Temperature, Error<I2C::Error>> {
        Ok(Temperature(self.read_register(Register::TempResult)? as i16))
    }

    /// Sets `Temp_Offset`, which the device adds to every later result.
    pub fn set_offset(&mut self, offset: Temperature) -> Result<(), Error<I2C::Error>> {
        self.write_register(Register::TempOffset, offset.0 as u16)
    }

    /// Starts one conversion with `averaging`; the device shuts down afterwards. Writes the
    /// reset configuration with `MOD = 11` and the averaging (alert settings at their defaults).
    pub fn start_one_shot(&mut self, averaging: Averaging) -> Result<(), Error<I2C::Error>> {
        self.set_config(
            Config::RESET
                .with_averaging(averaging)
                .with_mode(Mode::OneShot),
        )
    }

    /// One-shot measurement: starts a conversion, waits its nominal time, then polls
    /// `Data_Ready` every millisecond for up to the same time again, and reads the result.
    pub fn one_shot(
        &mut self,
        averaging: Averaging,
        delay: &mut impl DelayNs,
    ) -> Result<Temperature, Error<I2C::Error>> {
        self.start_one_shot(averaging)?;
        delay.delay_us(averaging.conversion_us());
        let polls = averaging.conversion_us().div_ceil(1000);
        for _ in 0..=polls {
            if self.config()?.data_ready() {
                return self.temperature();
            }
            delay.delay_ms(1);
        }
        Err(Error::Timeout)
    }
}
