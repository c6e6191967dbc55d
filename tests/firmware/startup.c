/* Reset handler and vector table for the QEMU mps2 boards (Cortex-M3 / M4), newlib with
 * semihosting (--specs=rdimon.specs -nostartfiles): copy .data, clear .bss, enable the FPU on a
 * hard-float build (CPACR: full access to CP10 and CP11), open the semihosting handles, run
 * main, and leave QEMU through SYS_EXIT with main's status. A fault exits with status 3. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __StackTop;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void)
{
    memcpy(&__data_start__, &__data_load__, (size_t)((char *)&__data_end__ - (char *)&__data_start__));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;      /* CPACR: CP10, CP11 full access */
    __asm volatile ("dsb\n\tisb" ::: "memory");
#endif
    initialise_monitor_handles();
    exit(main());
}

void Fault_Handler(void)
{
    _Exit(3);
}

/* initial stack pointer, reset, NMI, HardFault, MemManage, BusFault, UsageFault */
__attribute__((section(".vectors"), used))
static const uintptr_t vectors[16] = {
    (uintptr_t)&__StackTop, (uintptr_t)Reset_Handler, (uintptr_t)Fault_Handler, (uintptr_t)Fault_Handler,
    (uintptr_t)Fault_Handler, (uintptr_t)Fault_Handler, (uintptr_t)Fault_Handler,
};

/* newlib's exit runs the fini array through _fini; with -nostartfiles nothing else defines it */
void _init(void) {}
void _fini(void) {}
