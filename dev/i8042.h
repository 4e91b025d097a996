/*
 * Just enough of the i8042 keyboard controller for `reboot=k`: writing the
 * pulse-reset command 0xFE to port 0x64 ends the VM as a guest reset.
 * Stateless apart from the shutdown hook; any vCPU thread.
 */
#ifndef DEV_I8042_H
#define DEV_I8042_H

struct vm;
struct i8042;

int i8042_create(struct i8042 **out, struct vm *vm);
void i8042_destroy(struct i8042 *k);

#endif
