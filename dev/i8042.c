/*
 * i8042 reset line (see i8042.h). Reads of the data and status ports give
 * 0: no data, input buffer empty, so the kernel's kb_wait() returns at once.
 */
#include "dev/i8042.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "core/util.h"
#include "core/vm.h"
#include "rcu/rcu.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_CMD_PULSE_RESET 0xfe

struct i8042 {
	struct bus_dev data_dev;
	struct bus_dev cmd_dev;
	struct rcu_head rcu;
	struct vm *vm;
};

static void i8042_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	memset(data, 0, len);
}

static void i8042_data_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
}

static void i8042_cmd_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	struct i8042 *k = container_of(dev, struct i8042, cmd_dev);

	if (*(const uint8_t *)data == I8042_CMD_PULSE_RESET)
		vm_shutdown_request(&k->vm->shutdown, 0, "guest reset (i8042)");
}

static const struct bus_dev_ops i8042_data_ops = {
	.read = i8042_read,
	.write = i8042_data_write,
};

static const struct bus_dev_ops i8042_cmd_ops = {
	.read = i8042_read,
	.write = i8042_cmd_write,
};

int i8042_create(struct i8042 **out, struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	k->data_dev = (struct bus_dev){ .ops = &i8042_data_ops, .name = "i8042" };
	k->cmd_dev = (struct bus_dev){ .ops = &i8042_cmd_ops, .name = "i8042" };
	k->vm = vm;
	ret = bus_register(&vm->pio, I8042_DATA_PORT, 1, &k->data_dev);
	if (!ret) {
		ret = bus_register(&vm->pio, I8042_CMD_PORT, 1, &k->cmd_dev);
		if (ret)
			bus_unregister(&vm->pio, &k->data_dev);
	}
	if (ret) {
		free(k);
		return ret;
	}
	*out = k;
	return 0;
}

static void i8042_free_rcu(struct rcu_head *head)
{
	free(container_of(head, struct i8042, rcu));
}

void i8042_destroy(struct i8042 *k)
{
	bus_unregister(&k->vm->pio, &k->data_dev);
	bus_unregister(&k->vm->pio, &k->cmd_dev);
	call_rcu(&k->rcu, i8042_free_rcu);
}
