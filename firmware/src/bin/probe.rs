#![no_std]
#![no_main]
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { debug::exit(debug::EXIT_FAILURE); loop {} }
#[inline(never)]
#[no_mangle]
extern "C" fn kinglet_mark() { core::hint::black_box(()) }
#[inline(never)]
fn spin(n: u32) { for i in 0..n { core::hint::black_box(i); } }
#[entry]
fn main() -> ! {
    let mut p = cortex_m::Peripherals::take().unwrap();
    p.SYST.set_clock_source(SystClkSource::Core);
    p.SYST.set_reload(0xFF_FFFF);
    p.SYST.clear_current();
    p.SYST.enable_counter();
    for n in [0u32, 1, 10, 100, 1000, 100000] {
        let a = cortex_m::peripheral::SYST::get_current();
        kinglet_mark();
        spin(n);
        kinglet_mark();
        let b = cortex_m::peripheral::SYST::get_current();
        hprintln!("n={} ticks={}", n, a - b);
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}
