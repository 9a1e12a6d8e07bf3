//! Oil-temperature forecasting from a sensor: a TMP117 (`tmp117` driver, embedded-hal 1.0 I2C)
//! is read once per (simulated) hour with a one-shot conversion. Under QEMU the bus is a replay
//! bus (`replay::ReplayTmp117`) that answers with committed ETTh1 `OT` values (the
//! `models/forecast_gru` test windows) encoded as `Temp_Result` register values. Once 96 hourly
//! samples are in, every new hour forecasts the next 24 with `models/forecast_gru`
//! (GRU(1→64) → Linear(64→24), int8), and 24 hours later logs the forecast's MSE against the
//! replayed truth (z-scored units, f32). It checks the int8 forecasts and the MSEs to the bit
//! against the host's (computed by `build.rs`) and exits non-zero on a mismatch.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt::info;
use kinglet::{Model, Session};
use kinglet_firmware::common::{zscore, SquaredError, HORIZON, LOOKBACK};
use kinglet_firmware::replay::ReplayTmp117;
use kinglet_firmware::{self as fw, Clock};
use tmp117::{Address, Averaging, Tmp117};

fw::handlers!();

/// The model file, read in place from flash (16-byte aligned).
static MODEL: &[u8] = fw::include_aligned!("../../../models/forecast_gru/model.kgl");
/// `fixture::SAMPLES` TMP117 `Temp_Result` values (i16 little-endian), one per hour.
static REPLAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/forecast_replay.bin"));
mod fixture {
    include!(concat!(env!("OUT_DIR"), "/forecast.rs"));
}

/// The replay bus answers at once: waiting is a no-op here (a board would pass its timer).
struct NoWait;
impl embedded_hal::delay::DelayNs for NoWait {
    fn delay_ns(&mut self, _ns: u32) {}
}

/// A forecast waiting for its truth.
#[derive(Clone, Copy)]
struct Pending {
    index: usize,
    forecast: [f32; HORIZON],
    error: SquaredError,
}

#[entry]
fn main() -> ! {
    static mut ARENA: fw::Aligned<[u8; fw::ARENA_BYTES]> = fw::Aligned([0; fw::ARENA_BYTES]);
    // The forecasts awaiting their truth (up to 24 in flight), in .bss rather than on the stack.
    static mut PENDING: [Option<Pending>; HORIZON] = [None; HORIZON];
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);

    info!(
        "forecast on {=str}: models/forecast_gru (GRU-64, 96 h in, 24 h out), TMP117 on a replay I2C bus",
        fw::board::BOARD
    );
    let model = fw::check(Model::parse(MODEL), "model");
    fw::check_arena(&model);
    let mut session = fw::check(Session::new(&model, &mut ARENA.0), "session");
    let (x, y) = (
        fw::check(model.input(0).ok_or(()), "input"),
        fw::check(model.output(0).ok_or(()), "output"),
    );
    let mut sensor = Tmp117::new(ReplayTmp117::new(0x48, REPLAY), Address::Gnd);
    let revision = fw::check(sensor.check_device_id(), "TMP117 device id");
    info!(
        "TMP117 at 0x48, revision {=u8}; {=usize} hourly samples to replay, forecasts from hour {=usize}",
        revision,
        fixture::SAMPLES,
        LOOKBACK
    );
    Clock::log_resolution();

    // The last 96 readings, a ring (raw 1/128 °C).
    let mut history = [0i16; LOOKBACK];
    let pending = PENDING;
    let (mut made, mut scored, mut all_ok) = (0usize, 0usize, true);
    let (mut total, mut lo, mut hi, mut mse_sum) = (0u64, u64::MAX, 0u64, 0f32);
    let mut xq = [0i8; LOOKBACK];
    let mut yq = [0i8; HORIZON];
    for hour in 0..fixture::SAMPLES {
        let t = fw::check(sensor.one_shot(Averaging::X8, &mut NoWait), "TMP117 read");
        let truth = zscore(t.raw(), fixture::MEAN, fixture::STD);
        history[hour % LOOKBACK] = t.raw();

        // Score the forecasts this hour completes a step of (oldest horizon step first).
        for slot in pending.iter_mut() {
            let Some(p) = slot else { continue };
            p.error.add(p.forecast[p.error.count()], truth);
            if p.error.count() < HORIZON {
                continue;
            }
            let mse = p.error.mean();
            let ok = mse.to_bits() == fixture::HOST_MSE[p.index];
            all_ok &= ok;
            info!(
                "forecast {=usize}: MSE vs replayed truth {=f32} (z units), host {=str}",
                p.index,
                mse,
                if ok { "OK" } else { "MISMATCH" }
            );
            (scored, mse_sum) = (scored + 1, mse_sum + mse);
            *slot = None;
        }

        if hour + 1 < LOOKBACK || made == fixture::FORECASTS {
            continue;
        }
        // Forecast the next 24 hours from the last 96.
        let mut z = [0f32; LOOKBACK];
        for (i, v) in z.iter_mut().enumerate() {
            *v = zscore(
                history[(hour + 1 + i) % LOOKBACK],
                fixture::MEAN,
                fixture::STD,
            );
        }
        x.quantize(&z, &mut xq);
        let (r, ticks) = clock.measure(|| session.run(&xq, &mut yq));
        fw::check(r, "run");
        let n = Clock::count(ticks);
        (total, lo, hi) = (total + n, lo.min(n), hi.max(n));
        let host = &fixture::HOST_FORECASTS[made * HORIZON..(made + 1) * HORIZON];
        let ok = yq[..] == *host;
        all_ok &= ok;
        let mut forecast = [0f32; HORIZON];
        y.dequantize(&yq, &mut forecast);
        // First and last hour of the forecast in °C, for the log.
        let celsius = |z: f32| z * fixture::STD + fixture::MEAN;
        info!(
            "hour {=usize} ({=f32} C): forecast {=usize} int8 {=[?]}, next hour {=f32} C, in 24 h {=f32} C, host {=str}, {=u64} {=str}",
            hour,
            t.celsius(),
            made,
            yq,
            celsius(forecast[0]),
            celsius(forecast[HORIZON - 1]),
            if ok { "OK" } else { "MISMATCH" },
            n,
            Clock::UNIT
        );
        if let Some(slot) = pending.iter_mut().find(|s| s.is_none()) {
            *slot = Some(Pending {
                index: made,
                forecast,
                error: SquaredError::default(),
            });
        }
        made += 1;
    }
    let mean_mse = mse_sum / scored.max(1) as f32;
    let mean_ok = scored == fixture::FORECASTS && mean_mse.to_bits() == fixture::HOST_MEAN_MSE;
    all_ok &= mean_ok && made == fixture::FORECASTS;
    info!(
        "{=usize} forecasts, {=usize} scored: mean MSE {=f32} (z units), host {=str}; the sensor's 1/128 C moved {=usize} of {=usize} int8 inputs from test.npy's",
        made,
        scored,
        mean_mse,
        if mean_ok { "OK" } else { "MISMATCH" },
        fixture::INPUTS_DIFFERING_FROM_TEST_NPY,
        fixture::FORECASTS * LOOKBACK
    );
    info!(
        "{=str} per forecast: mean {=u64} min {=u64} max {=u64} over {=usize}",
        Clock::UNIT,
        total / made.max(1) as u64,
        lo,
        hi,
        made
    );
    info!(
        "forecasts vs host: {=str}",
        if all_ok { "OK" } else { "MISMATCH" }
    );
    fw::log_memory(&model, fw::ARENA_BYTES, "replayed samples", REPLAY.len());
    fw::exit(all_ok)
}
