/*
 * Hardware-reduced ACPI power management registers on port I/O: the sleep
 * control/status register (S5 = power off) and the reset register. Their
 * ports are described to the guest in the FADT (core/acpi.c).
 * Any vCPU thread; no state besides the shutdown hook.
 */
#ifndef DEV_ACPI_PM_H
#define DEV_ACPI_PM_H

#include <stdint.h>

struct vm;
struct acpi_pm;

#define ACPI_PM_SLEEP_PORT 0x600
#define ACPI_PM_RESET_PORT 0x601
#define ACPI_PM_RESET_VALUE 0x1

int acpi_pm_create(struct acpi_pm **out, struct vm *vm);
void acpi_pm_destroy(struct acpi_pm *pm);

#endif
