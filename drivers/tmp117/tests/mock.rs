//! The driver against `embedded-hal-mock`: every I2C transaction checked byte for byte against
//! the TMP117 register map, and the conversions against an f64 reference.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use tmp117::{Address, Averaging, Config, Error, Mode, Register, Temperature, Tmp117};

const ADDR: u8 = 0x48;

fn read(reg: u8, value: u16) -> T {
    T::write_read(ADDR, vec![reg], value.to_be_bytes().to_vec())
}

fn with<R>(expect: &[T], address: Address, f: impl FnOnce(&mut Tmp117<Mock>) -> R) -> R {
    let mut sensor = Tmp117::new(Mock::new(expect), address);
    let r = f(&mut sensor);
    sensor.release().done();
    r
}

#[test]
fn addresses_follow_the_add0_pin() {
    assert_eq!(
        [Address::Gnd, Address::Vplus, Address::Sda, Address::Scl].map(Address::bits),
        [0x48, 0x49, 0x4A, 0x4B]
    );
    // The driver really talks to the address it was given.
    let rev = with(
        &[T::write_read(0x4B, vec![0x0F], vec![0x01, 0x17])],
        Address::Scl,
        |s| s.check_device_id(),
    );
    assert_eq!(rev, Ok(0));
}

#[test]
fn device_id_is_checked_and_revision_returned() {
    let rev = with(&[read(0x0F, 0x2117)], Address::Gnd, |s| s.check_device_id());
    assert_eq!(rev, Ok(2));
    // Some other sensor at 0x48 (a TMP102 has no register 0x0F and reads back junk).
    let err = with(&[read(0x0F, 0x0075)], Address::Gnd, |s| s.check_device_id());
    assert_eq!(err, Err(Error::WrongDevice { id: 0x0075 }));
}

#[test]
fn temperature_register_is_big_endian_two_complement_1_128_degree() {
    for (bytes, milli, celsius) in [
        ([0x0C, 0x80], 25_000, 25.0),                   // 3200 / 128
        ([0x00, 0x01], 8, 0.0078125),                   // one LSB = 7.8125 m°C, rounded up
        ([0xFF, 0xFF], -8, -0.0078125),                 // -1 LSB, rounded away from zero
        ([0xFF, 0x80], -1_000, -1.0),                   // -128
        ([0x80, 0x00], -256_000, -256.0), // the reset value before the first conversion
        ([0x7F, 0xFF], 255_992, 255.0 + 127.0 / 128.0), // largest: 255.9921875 °C
        ([0x0F, 0x44], 30_531, 30.53125), // 3908: 30.53125 °C, an ETTh1 oil temperature
    ] {
        let t = with(
            &[T::write_read(ADDR, vec![0x00], bytes.to_vec())],
            Address::Gnd,
            |s| s.temperature(),
        )
        .unwrap();
        assert_eq!(t.raw(), i16::from_be_bytes(bytes));
        assert_eq!(t.millicelsius(), milli, "{bytes:02x?}");
        assert_eq!(t.celsius(), celsius, "{bytes:02x?}");
    }
}

#[test]
fn conversions_match_an_f64_reference_for_every_raw_value() {
    for raw in i16::MIN..=i16::MAX {
        let t = Temperature(raw);
        let exact = raw as f64 * 1000.0 / 128.0;
        // f64 round() rounds ties away from zero, as millicelsius() documents.
        assert_eq!(t.millicelsius() as f64, exact.round(), "raw {raw}");
        assert_eq!(t.celsius() as f64, raw as f64 / 128.0, "raw {raw}");
        // One LSB is 7.8 m°C, so rounding to m°C and back is lossless.
        assert_eq!(Temperature::from_millicelsius(t.millicelsius()), t);
    }
    assert_eq!(
        Temperature::from_millicelsius(1_000_000),
        Temperature(i16::MAX)
    );
    assert_eq!(
        Temperature::from_millicelsius(-1_000_000),
        Temperature(i16::MIN)
    );
    assert_eq!(Temperature::from_millicelsius(3), Temperature(0)); // 0.384 LSB
    assert_eq!(Temperature::from_millicelsius(4), Temperature(1)); // 0.512 LSB
    assert_eq!(Temperature::from_millicelsius(-4), Temperature(-1));
}

#[test]
fn configuration_fields() {
    let reset = Config::RESET;
    assert_eq!(reset.0, 0x0220);
    assert_eq!(reset.mode(), Mode::Continuous);
    assert_eq!(reset.averaging(), Averaging::X8);
    assert_eq!(reset.conversion_cycle(), 0b100); // 1 s cycle
    assert!(!reset.data_ready() && !reset.high_alert() && !reset.low_alert());
    let flags = Config(0xF000);
    assert!(flags.high_alert() && flags.low_alert() && flags.data_ready() && flags.eeprom_busy());
    // Setting fields clears the read-only flags and leaves the others alone.
    let c = Config(0x2220)
        .with_mode(Mode::OneShot)
        .with_averaging(Averaging::X64);
    assert_eq!(c.0, 0x0E60);
    assert_eq!((c.mode(), c.averaging()), (Mode::OneShot, Averaging::X64));
    assert_eq!(Config(0x0400).mode(), Mode::Shutdown);
    assert_eq!(Config(0x0800).mode(), Mode::Continuous); // 10 also means continuous
    assert_eq!(Config::RESET.with_averaging(Averaging::None).0, 0x0200);
}

#[test]
fn one_shot_writes_mode_11_polls_data_ready_then_reads_the_result() {
    let t = with(
        &[
            // Configuration <- 0x0E20: MOD = 11 (one-shot), CONV = 100, AVG = 01 (8 samples).
            T::write(ADDR, vec![0x01, 0x0E, 0x20]),
            read(0x01, 0x0E20), // not ready yet
            read(0x01, 0x0E20), // still not
            read(0x01, 0x2620), // Data_Ready (bit 13); the device is back in shutdown (MOD 01)
            read(0x00, 0x0F44),
        ],
        Address::Gnd,
        |s| s.one_shot(Averaging::X8, &mut NoopDelay::new()),
    );
    assert_eq!(t, Ok(Temperature(0x0F44)));
}

#[test]
fn one_shot_times_out_after_twice_the_conversion_time() {
    // No averaging: 15.5 ms nominal, then 16 polls 1 ms apart (0..=16: 17 reads).
    let mut expect = vec![T::write(ADDR, vec![0x01, 0x0E, 0x00])];
    expect.extend((0..17).map(|_| read(0x01, 0x0E00)));
    let r = with(&expect, Address::Gnd, |s| {
        s.one_shot(Averaging::None, &mut NoopDelay::new())
    });
    assert_eq!(r, Err(Error::Timeout));
}

#[test]
fn offset_soft_reset_and_limits_are_plain_register_writes() {
    with(
        &[
            T::write(ADDR, vec![0x07, 0xFF, 0xC0]), // -0.5 °C = -64 LSB
            T::write(ADDR, vec![0x01, 0x00, 0x02]), // Soft_Reset
            T::write(ADDR, vec![0x02, 0x19, 0x00]), // THigh = 50 °C
        ],
        Address::Gnd,
        |s| {
            s.set_offset(Temperature::from_millicelsius(-500)).unwrap();
            s.soft_reset().unwrap();
            s.write_register(
                Register::THighLimit,
                Temperature::from_millicelsius(50_000).0 as u16,
            )
            .unwrap();
        },
    );
}

#[test]
fn read_only_registers_are_refused_without_touching_the_bus() {
    with(&[], Address::Gnd, |s| {
        assert_eq!(
            s.write_register(Register::TempResult, 0),
            Err(Error::ReadOnly(Register::TempResult))
        );
        assert_eq!(
            s.write_register(Register::DeviceId, 0),
            Err(Error::ReadOnly(Register::DeviceId))
        );
    });
}

#[test]
fn bus_errors_are_passed_on() {
    let r = with(
        &[T::write_read(ADDR, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other)],
        Address::Gnd,
        |s| s.temperature(),
    );
    assert_eq!(r, Err(Error::I2c(ErrorKind::Other)));
}
