/*
 * ACPI sleep and reset registers (see acpi_pm.h). The guest powers off by
 * writing (SLP_TYP << 2) | SLP_EN with the \_S5 value from our DSDT.
 */
#include "dev/acpi_pm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/acpi.h"
#include "core/bus.h"
#include "core/util.h"
#include "core/vm.h"
#include "rcu/rcu.h"

struct acpi_pm {
	struct bus_dev dev;
	struct rcu_head rcu;
	struct vm *vm;
};

static void acpi_pm_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	memset(data, 0, len);
}

static void acpi_pm_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, dev);
	uint8_t v = *(const uint8_t *)data;

	if (offset == ACPI_PM_SLEEP_PORT - ACPI_PM_SLEEP_PORT && (v & ACPI_SLP_EN) &&
	    ((v >> 2) & 7) == ACPI_S5_SLP_TYP)
		vm_shutdown_request(&pm->vm->shutdown, 0, "guest powered off (ACPI S5)");
	else if (offset == ACPI_PM_RESET_PORT - ACPI_PM_SLEEP_PORT && v == ACPI_PM_RESET_VALUE)
		vm_shutdown_request(&pm->vm->shutdown, 0, "guest reset (ACPI reset register)");
}

static const struct bus_dev_ops acpi_pm_ops = {
	.read = acpi_pm_read,
	.write = acpi_pm_write,
};

int acpi_pm_create(struct acpi_pm **out, struct vm *vm)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	int ret;

	if (!pm)
		return -ENOMEM;
	pm->dev = (struct bus_dev){ .ops = &acpi_pm_ops, .name = "acpi-pm" };
	pm->vm = vm;
	ret = bus_register(&vm->pio, ACPI_PM_SLEEP_PORT, 2, &pm->dev);
	if (ret) {
		free(pm);
		return ret;
	}
	*out = pm;
	return 0;
}

static void acpi_pm_free_rcu(struct rcu_head *head)
{
	free(container_of(head, struct acpi_pm, rcu));
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	bus_unregister(&pm->vm->pio, &pm->dev);
	call_rcu(&pm->rcu, acpi_pm_free_rcu);
}
