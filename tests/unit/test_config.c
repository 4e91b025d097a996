/*
 * Unit test of core/config.c: a table of malformed files, each with the
 * exact one-line message it must produce, then valid files with every
 * parsed field checked, then config_load() on temporary files and on the
 * examples (when run from the repo root, as tests/run.sh does).
 * Single-threaded. Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/config.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "dir/vm.toml"
#define HOST_RAM (8 * GiB)
#define T(s) s, sizeof(s) - 1	/* a literal with its length: it may hold NULs */

/* Big: keep it off the stack. */
static struct vm_config test_cfg;

struct test_bad {
	const char *text;
	size_t len;
	const char *msg;
};

static const struct test_bad test_bad_cases[] = {
	/* structure */
	{ T(""), NAME ":1: [vm]: expected a [vm] section with kernel = \"PATH\", found end of file" },
	{ T("# only\n# comments\n"), NAME ":3: [vm]: expected a [vm] section with kernel = \"PATH\", found end of file" },
	{ T("[serial]\noutput = \"none\""), NAME ":2: [vm]: expected a [vm] section with kernel = \"PATH\", found end of file" },
	{ T("\n[vm]\nmemory = 1G\n"), NAME ":2: vm.kernel: expected kernel = \"PATH\" in [vm], found no kernel" },
	{ T("[vmm]\n"), NAME ":1: [vmm]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [vmm]" },
	{ T("[disk]\n"), NAME ":1: [disk]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [disk]" },
	{ T("[disk.d0]\n"), NAME ":2: [vm]: expected a [vm] section with kernel = \"PATH\", found end of file" },
	{ T("[vm.x]\n"), NAME ":1: [vm.x]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [vm.x]" },
	{ T("[iothread]\n"), NAME ":1: [iothread]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [iothread]" },
	{ T("[iothread.]\n"), NAME ":1: [iothread.]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [iothread.]" },
	{ T("[]\n"), NAME ":1: []: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found []" },
	{ T("[vm\nkernel = \"k\"\n"), NAME ":1: [vm: expected ']' to close the section header, found end of line" },
	{ T("[vm] x\n"), NAME ":1: [vm]: expected end of line after the section header, found 'x'" },
	{ T("[vm]]\n"), NAME ":1: [vm]: expected end of line after the section header, found ']'" },
	{ T("[vm]\nkernel = \"k\"\n[vm]\n"), NAME ":3: [vm]: expected each section once, found [vm] again (first on line 1)" },
	{ T("[serial]\n[vm]\n[serial]\n"), NAME ":3: [serial]: expected each section once, found [serial] again (first on line 1)" },
	{ T("[iothread.a]\n[iothread.b]\n[iothread.a]\n"), NAME ":3: [iothread.a]: expected each section once, found [iothread.a] again (first on line 1)" },
	{ T("[iothread.a b]\n"), NAME ":1: [iothread.a b]: expected a name of letters, digits, '_' and '-', found 'a b'" },
	{ T("[iothread.a.b]\n"), NAME ":1: [iothread.a.b]: expected a name of letters, digits, '_' and '-', found 'a.b'" },
	{ T("[iothread.0123456789012345678901234567890123456789012345678901234567890123]\n"),
	  NAME ":1: [iothread.0123456789012345678901234567890123456789012345678901234567890123]: expected a name of at most 63 characters, found 64" },
	{ T("memory = 1G\n[vm]\n"), NAME ":1: memory: expected a section header such as [vm] before any key, found a key" },
	{ T("@@@\n"), NAME ":1: top level: expected a key or a section header, found '@@@'" },
	{ T("[vm]\n= 5\n"), NAME ":2: [vm]: expected a key or a section header, found '='" },
	{ T("[vm]\n\"kernel\" = \"k\"\n"), NAME ":2: [vm]: expected a key or a section header, found '\"kernel\"'" },
	/* keys */
	{ T("[vm]\nmemroy = 1G\n"), NAME ":2: vm.memroy: expected a key of [vm] (memory, vcpus, kernel, initrd, cmdline), found memroy" },
	{ T("[serial]\npath = \"x\"\n"), NAME ":2: serial.path: expected a key of [serial] (output), found path" },
	{ T("[iothread.io0]\ncpu = [1]\n"), NAME ":2: iothread.io0.cpu: expected a key of [iothread.io0] (cpus, poll_max_ns), found cpu" },
	{ T("[vm]\nvm.memory = 1G\n"), NAME ":2: vm.vm.memory: expected a key of [vm] (memory, vcpus, kernel, initrd, cmdline), found vm.memory" },
	{ T("[vm]\nkernel \"k\"\n"), NAME ":2: vm.kernel: expected '=' after the key, found '\"k\"'" },
	{ T("[vm]\nkernel: \"k\"\n"), NAME ":2: vm.kernel: expected '=' after the key, found ':'" },
	{ T("[vm]\nkernel\n"), NAME ":2: vm.kernel: expected '=' after the key, found end of line" },
	{ T("[vm]\nkernel = \"a\"\nkernel = \"b\"\n"), NAME ":3: vm.kernel: expected each key once per section, found kernel again (first on line 2)" },
	{ T("[iothread.a]\ncpus = [1]\n[iothread.b]\ncpus = [2]\ncpus = [3]\n"),
	  NAME ":5: iothread.b.cpus: expected each key once per section, found cpus again (first on line 4)" },
	/* strings */
	{ T("[vm]\nkernel = \"abc\n"), NAME ":2: vm.kernel: expected a closing '\"', found end of line" },
	{ T("[vm]\nkernel = \"abc\\\"\n"), NAME ":2: vm.kernel: expected a closing '\"', found end of line" },
	{ T("[vm]\ncmdline = \"a\\qb\"\n"), NAME ":2: vm.cmdline: expected one of the escapes \\\" \\\\ \\n \\t, found '\\q'" },
	{ T("[vm]\ncmdline = \"a\\"), NAME ":2: vm.cmdline: expected one of the escapes \\\" \\\\ \\n \\t, found end of line" },
	{ T("[vm]\ncmdline = \"a\\\0\"\n"), NAME ":2: vm.cmdline: expected one of the escapes \\\" \\\\ \\n \\t, found '\\\\x00'" },
	{ T("[vm]\nkernel = \"a\0b\"\n"), NAME ":2: vm.kernel: expected printable text in the string, found \\x00" },
	{ T("[vm]\nkernel = \"a\rb\"\n"), NAME ":2: vm.kernel: expected printable text in the string, found \\x0d" },
	{ T("[vm]\nkernel = vmlinuz\n"), NAME ":2: vm.kernel: expected a quoted path, found 'vmlinuz'" },
	{ T("[vm]\nkernel = 'vmlinuz'\n"), NAME ":2: vm.kernel: expected a quoted path, found ''vmlinuz''" },
	{ T("[vm]\nkernel = 42\n"), NAME ":2: vm.kernel: expected a quoted path, found the integer 42" },
	{ T("[vm]\nkernel = 99999999999999999999\n"), NAME ":2: vm.kernel: expected a quoted path, found '99999999999999999999'" },
	{ T("[vm]\nkernel = [\"a\"]\n"), NAME ":2: vm.kernel: expected a quoted path, found the array [\"a\"]" },
	{ T("[vm]\nkernel = \"\"\n"), NAME ":2: vm.kernel: expected a non-empty path, found \"\"" },
	{ T("[vm]\ninitrd = \"\"\n"), NAME ":2: vm.initrd: expected a non-empty path, found \"\"" },
	{ T("[serial]\noutput = \"\"\n"), NAME ":2: serial.output: expected a non-empty path, found \"\"" },
	{ T("[serial]\noutput = stdio\n"), NAME ":2: serial.output: expected a quoted string (\"stdio\", \"none\" or a file path), found 'stdio'" },
	{ T("[vm]\nkernel = \"a\" \"b\"\n"), NAME ":2: vm.kernel: expected end of line after the value, found '\"b\"'" },
	{ T("[vm]\nkernel = \"a\"x\n"), NAME ":2: vm.kernel: expected end of line after the value, found 'x'" },
	{ T("[vm]\ncmdline = true\n"), NAME ":2: vm.cmdline: expected a quoted string, found the boolean true" },
	/* integers */
	{ T("[vm]\nvcpus = \"2\"\n"), NAME ":2: vm.vcpus: expected an integer, found the string \"2\"" },
	{ T("[vm]\nvcpus = true\n"), NAME ":2: vm.vcpus: expected an integer, found the boolean true" },
	{ T("[vm]\nvcpus = [2]\n"), NAME ":2: vm.vcpus: expected an integer, found the array [2]" },
	{ T("[vm]\nvcpus = two\n"), NAME ":2: vm.vcpus: expected an integer, found 'two'" },
	{ T("[vm]\nvcpus = TRUE\n"), NAME ":2: vm.vcpus: expected an integer, found 'TRUE'" },
	{ T("[vm]\nvcpus =\n"), NAME ":2: vm.vcpus: expected an integer, found end of line" },
	{ T("[vm]\nvcpus = # none\n"), NAME ":2: vm.vcpus: expected an integer, found a comment" },
	{ T("[vm]\nvcpus = -1\n"), NAME ":2: vm.vcpus: expected an integer, found '-1'" },
	{ T("[vm]\nvcpus = +1\n"), NAME ":2: vm.vcpus: expected an integer, found '+1'" },
	{ T("[vm]\nvcpus = 2 3\n"), NAME ":2: vm.vcpus: expected end of line after the value, found '3'" },
	{ T("[vm]\nvcpus = 2,\n"), NAME ":2: vm.vcpus: expected end of line after the value, found ','" },
	{ T("[vm]\nvcpus = 0\n"), NAME ":2: vm.vcpus: expected 1 to 254, found 0" },
	{ T("[vm]\nvcpus = 255\n"), NAME ":2: vm.vcpus: expected 1 to 254, found 255" },
	{ T("[vm]\nvcpus = 1K\n"), NAME ":2: vm.vcpus: expected 1 to 254, found 1K" },
	{ T("[vm]\nmemory = 1.5G\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '1.5G'" },
	{ T("[vm]\nmemory = 512MB\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '512MB'" },
	{ T("[vm]\nmemory = 512MiB\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '512MiB'" },
	{ T("[vm]\nmemory = 512m\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '512m'" },
	{ T("[vm]\nmemory = 1T\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '1T'" },
	{ T("[vm]\nmemory = 0x\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '0x'" },
	{ T("[vm]\nmemory = 0xG\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '0xG'" },
	{ T("[vm]\nmemory = 0x1g\n"), NAME ":2: vm.memory: expected an integer with an optional K, M or G suffix, found '0x1g'" },
	{ T("[vm]\nmemory = 512 M\n"), NAME ":2: vm.memory: expected end of line after the value, found 'M'" },
	{ T("[vm]\nmemory = 18446744073709551616\n"), NAME ":2: vm.memory: expected an integer below 2^64, found 18446744073709551616" },
	{ T("[vm]\nmemory = 0x10000000000000000\n"), NAME ":2: vm.memory: expected an integer below 2^64, found 0x10000000000000000" },
	{ T("[vm]\nmemory = 17179869184G\n"), NAME ":2: vm.memory: expected an integer below 2^64, found 17179869184G" },
	{ T("[vm]\nmemory = 8M\n"), NAME ":2: vm.memory: expected at least 16M, found 8M" },
	{ T("[vm]\nmemory = 0\n"), NAME ":2: vm.memory: expected at least 16M, found 0" },
	{ T("[vm]\nmemory = 16777217\n"), NAME ":2: vm.memory: expected a multiple of 4K, found 16777217" },
	{ T("[vm]\nmemory = 0x1000800\n"), NAME ":2: vm.memory: expected a multiple of 4K, found 0x1000800" },
	{ T("[vm]\nmemory = 8193M\n"), NAME ":2: vm.memory: expected at most 8G (the host's RAM), found 8193M" },
	{ T("[vm]\nmemory = 16G\n"), NAME ":2: vm.memory: expected at most 8G (the host's RAM), found 16G" },
	/* arrays */
	{ T("[iothread.x]\ncpus = [1, 2 3]\n"), NAME ":2: iothread.x.cpus: expected ',' or ']' in the array, found '3'" },
	{ T("[iothread.x]\ncpus = [1, 2\n"), NAME ":2: iothread.x.cpus: expected ',' or ']' in the array, found end of line" },
	{ T("[iothread.x]\ncpus = [1, 2 # c ]\n"), NAME ":2: iothread.x.cpus: expected ',' or ']' in the array, found a comment" },
	{ T("[iothread.x]\ncpus = [\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found end of line" },
	{ T("[iothread.x]\ncpus = [1,,2]\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found ','" },
	{ T("[iothread.x]\ncpus = [,]\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found ','" },
	{ T("[iothread.x]\ncpus = [1, [2]]\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found a nested array" },
	{ T("[iothread.x]\ncpus = [1, x]\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found 'x'" },
	{ T("[iothread.x]\ncpus = [1, \"2\"]\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found the string \"2\"" },
	{ T("[iothread.x]\ncpus = [1, \"2]\n"), NAME ":2: iothread.x.cpus: expected a closing '\"', found end of line" },
	{ T("[iothread.x]\ncpus = [1, 99999999999999999999]\n"), NAME ":2: iothread.x.cpus: expected an integer below 2^64, found 99999999999999999999" },
	{ T("[iothread.x]\ncpus = 1\n"), NAME ":2: iothread.x.cpus: expected an array of host CPU numbers, found the integer 1" },
	{ T("[iothread.x]\ncpus = []\n"), NAME ":2: iothread.x.cpus: expected at least one CPU, found an empty array" },
	{ T("[iothread.x]\ncpus = [0, 256]\n"), NAME ":2: iothread.x.cpus: expected host CPU numbers below 256, found 256" },
	{ T("[iothread.x]\ncpus = [3, 1, 0x3]\n"), NAME ":2: iothread.x.cpus: expected each CPU once, found 0x3 twice" },
	{ T("[iothread.x]\ncpus = [1] 2]\n"), NAME ":2: iothread.x.cpus: expected end of line after the value, found '2'" },
	{ T("[iothread.x]\npoll_max_ns = 1000000001\n"), NAME ":2: iothread.x.poll_max_ns: expected at most 1000000000 (1 s), found 1000000001" },
	{ T("[iothread.x]\npoll_max_ns = \"1\"\n"), NAME ":2: iothread.x.poll_max_ns: expected an integer (nanoseconds), found the string \"1\"" },
	/* disks */
#define K "[vm]\nkernel = \"k\"\n"
	{ T(K "[disk.d0]\n"), NAME ":3: disk.d0.path: expected path = \"PATH\" in [disk.d0], found no path" },
	{ T(K "[disk.d0]\nformat = \"null\"\n"), NAME ":3: disk.d0.size: expected size = BYTES in [disk.d0] with format = \"null\", found no size" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = 1G\npath = \"x\"\n"), NAME ":6: disk.d0.path: expected no path with format = \"null\", found a path" },
	{ T(K "[disk.d0]\npath = \"x\"\nsize = 1G\n"), NAME ":5: disk.d0.size: expected no size with format = \"raw\" (the file's size is used), found 1G" },
	{ T(K "[disk.d0]\nformat = \"qcow\"\n"), NAME ":4: disk.d0.format: expected \"raw\", \"null\", \"qcow2\" or \"auto\", found the string \"qcow\"" },
	{ T(K "[disk.d0]\nformat = \"RAW\"\n"), NAME ":4: disk.d0.format: expected \"raw\", \"null\", \"qcow2\" or \"auto\", found the string \"RAW\"" },
	{ T(K "[disk.d0]\nformat = raw\n"), NAME ":4: disk.d0.format: expected a quoted string (\"raw\", \"null\", \"qcow2\" or \"auto\"), found 'raw'" },
	{ T(K "[disk.d0]\nformat = \"qcow2\"\n"), NAME ":3: disk.d0.path: expected path = \"PATH\" in [disk.d0], found no path" },
	{ T(K "[disk.d0]\nformat = \"qcow2\"\npath = \"x\"\nsize = 1G\n"), NAME ":6: disk.d0.size: expected no size with format = \"qcow2\" (the file's size is used), found 1G" },
	{ T(K "[disk.d0]\npath = \"x\"\nl2_cache = 1M\n"), NAME ":5: disk.d0.l2_cache: expected no l2_cache with format = \"raw\" (only qcow2 and auto have L2 tables), found 1M" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = 1G\nl2_cache = 1M\n"), NAME ":6: disk.d0.l2_cache: expected no l2_cache with format = \"null\" (only qcow2 and auto have L2 tables), found 1M" },
	{ T(K "[disk.d0]\nformat = \"qcow2\"\nl2_cache = 32K\n"), NAME ":5: disk.d0.l2_cache: expected 64K to 1G, found 32K" },
	{ T(K "[disk.d0]\nformat = \"auto\"\nl2_cache = 1025M\n"), NAME ":5: disk.d0.l2_cache: expected 64K to 1G, found 1025M" },
	{ T(K "[disk.d0]\nformat = \"auto\"\nl2_cache = \"1M\"\n"), NAME ":5: disk.d0.l2_cache: expected an integer with an optional K, M or G suffix, found the string \"1M\"" },
	{ T(K "[disk.d0]\nreadonly = 1\n"), NAME ":4: disk.d0.readonly: expected true or false, found the integer 1" },
	{ T(K "[disk.d0]\nreadonly = \"true\"\n"), NAME ":4: disk.d0.readonly: expected true or false, found the string \"true\"" },
	{ T(K "[disk.d0]\nreadonly = yes\n"), NAME ":4: disk.d0.readonly: expected true or false, found 'yes'" },
	{ T(K "[disk.d0]\nnum_queues = 0\n"), NAME ":4: disk.d0.num_queues: expected 1 to 64, found 0" },
	{ T(K "[disk.d0]\nnum_queues = 65\n"), NAME ":4: disk.d0.num_queues: expected 1 to 64, found 65" },
	{ T(K "[disk.d0]\nqueue_size = 100\n"), NAME ":4: disk.d0.queue_size: expected a power of two from 16 to 1024, found 100" },
	{ T(K "[disk.d0]\nqueue_size = 8\n"), NAME ":4: disk.d0.queue_size: expected a power of two from 16 to 1024, found 8" },
	{ T(K "[disk.d0]\nqueue_size = 2K\n"), NAME ":4: disk.d0.queue_size: expected a power of two from 16 to 1024, found 2K" },
	{ T(K "[disk.d0]\nqueue_size = 0\n"), NAME ":4: disk.d0.queue_size: expected a power of two from 16 to 1024, found 0" },
	{ T(K "[disk.d0]\ncache = \"unsafe\"\n"), NAME ":4: disk.d0.cache: expected \"writeback\" or \"none\", found the string \"unsafe\"" },
	{ T(K "[disk.d0]\ncache = none\n"), NAME ":4: disk.d0.cache: expected a quoted string (\"writeback\" or \"none\"), found 'none'" },
	{ T(K "[disk.d0]\nserial = \"012345678901234567890\"\n"), NAME ":4: disk.d0.serial: expected at most 20 bytes, found 21 bytes" },
	{ T(K "[disk.d0]\nserial = 42\n"), NAME ":4: disk.d0.serial: expected a quoted string, found the integer 42" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = 100\n"), NAME ":5: disk.d0.size: expected at least 512, found 100" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = 1000\n"), NAME ":5: disk.d0.size: expected a multiple of 512, found 1000" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = 8589934593G\n"), NAME ":5: disk.d0.size: expected at most 8589934592G, found 8589934593G" },
	{ T(K "[disk.d0]\nformat = \"null\"\nsize = \"1G\"\n"), NAME ":5: disk.d0.size: expected an integer with an optional K, M or G suffix, found the string \"1G\"" },
	{ T(K "[disk.d0]\npath = \"\"\n"), NAME ":4: disk.d0.path: expected a non-empty path, found \"\"" },
	{ T(K "[disk.d0]\npath = x\n"), NAME ":4: disk.d0.path: expected a quoted path, found 'x'" },
	{ T(K "[disk.d0]\npth = \"x\"\n"), NAME ":4: disk.d0.pth: expected a key of [disk.d0] (path, format, readonly, num_queues, queue_size, iothreads, cache, serial, size, l2_cache), found pth" },
	{ T(K "[disk.d0]\npath = \"a\"\npath = \"b\"\n"), NAME ":5: disk.d0.path: expected each key once per section, found path again (first on line 4)" },
	{ T(K "[disk.d0]\npath = \"a\"\n[disk.d1]\npath = \"b\"\n[disk.d0]\n"), NAME ":7: [disk.d0]: expected each section once, found [disk.d0] again (first on line 3)" },
	{ T(K "[disk.a b]\n"), NAME ":3: [disk.a b]: expected a name of letters, digits, '_' and '-', found 'a b'" },
	{ T(K "[disk.]\n"), NAME ":3: [disk.]: expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found [disk.]" },
	{ T(K "[disk.d0]\niothreads = []\n"), NAME ":4: disk.d0.iothreads: expected at least one IOThread name, found an empty array" },
	{ T(K "[disk.d0]\niothreads = \"io0\"\n"), NAME ":4: disk.d0.iothreads: expected an array of quoted IOThread names, found the string \"io0\"" },
	{ T(K "[disk.d0]\niothreads = [0]\n"), NAME ":4: disk.d0.iothreads: expected an array of quoted IOThread names, found the integer 0" },
	{ T(K "[disk.d0]\niothreads = [io0]\n"), NAME ":4: disk.d0.iothreads: expected an array of quoted IOThread names, found 'io0'" },
	{ T(K "[disk.d0]\niothreads = [\"a b\"]\n"), NAME ":4: disk.d0.iothreads: expected a name of letters, digits, '_' and '-', found 'a b'" },
	{ T(K "[disk.d0]\niothreads = [\"\"]\n"), NAME ":4: disk.d0.iothreads: expected a name of letters, digits, '_' and '-', found ''" },
	{ T(K "[disk.d0]\niothreads = [\"io0\", \"io1\", \"io0\"]\n"), NAME ":4: disk.d0.iothreads: expected each IOThread once, found \"io0\" twice" },
	{ T(K "[disk.d0]\npath = \"x\"\niothreads = [\"io0\", \"io9\"]\n[iothread.io0]\n"),
	  NAME ":5: disk.d0.iothreads: expected the name of an [iothread.NAME] section, found \"io9\"" },
	{ T(K "[iothread.a]\n[iothread.b]\n[disk.d0]\npath = \"x\"\nnum_queues = 1\niothreads = [\"a\", \"b\"]\n"),
	  NAME ":8: disk.d0.iothreads: expected at most one IOThread per queue (num_queues = 1), found 2" },
	{ T("[disk.d0]\npath = \"x\"\niothreads = [\"a\", \"b\"]\n[iothread.a]\n[iothread.b]\n[vm]\nkernel = \"k\"\nvcpus = 1\n"),
	  NAME ":3: disk.d0.iothreads: expected at most one IOThread per queue (num_queues = 1 from [vm] vcpus), found 2" },
	{ T(K "[disk.d0]\npath = \"x\"\n[disk.d1]\n"), NAME ":5: disk.d1.path: expected path = \"PATH\" in [disk.d1], found no path" },
#undef K
	/* odd bytes and line ends */
	{ T("[vm]\r\nkernel = vm linuz\r\n"), NAME ":2: vm.kernel: expected a quoted path, found 'vm'" },
	{ T("[vm]\nkernel = \"k\"\r\r\n"), NAME ":2: vm.kernel: expected end of line after the value, found '\\x0d'" },
	{ T("[vm]\n\0\n"), NAME ":2: [vm]: expected a key or a section header, found '\\x00'" },
	{ T("[vm]\n\xff\xfe = 1\n"), NAME ":2: [vm]: expected a key or a section header, found '\\xff\\xfe'" },
	{ T("[vm]\nkernel = \"k\" \x01\n"), NAME ":2: vm.kernel: expected end of line after the value, found '\\x01'" },
	{ T("[vm]\nvcpus = 1\x0b\n"), NAME ":2: vm.vcpus: expected an integer, found '1\\x0b'" },
	{ T("[vm]\nkernel = ab0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n"),
	  NAME ":2: vm.kernel: expected a quoted path, found 'ab012345678901234567890123456789012345678901234567890123456789012345678901234567...'" },
};

static void test_bad(void)
{
	char err[512];
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(test_bad_cases); i++) {
		const struct test_bad *t = &test_bad_cases[i];
		int ret;

		memset(err, 'X', sizeof(err));
		ret = config_parse(NAME, t->text, t->len, HOST_RAM, &test_cfg, err, sizeof(err));
		CHECK(ret == -EINVAL, "case %u (%s): returned %d", i, t->msg, ret);
		CHECK(memchr(err, '\0', sizeof(err)) != NULL, "case %u: message not terminated", i);
		CHECK(!strchr(err, '\n'), "case %u: message has a newline: %s", i, err);
		CHECK(strcmp(err, t->msg) == 0, "case %u:\n   got: %s\n  want: %s", i, err, t->msg);
	}
}

/* Every defaulted field, and the relative kernel path. */
static void test_defaults(void)
{
	static const char text[] = "[vm]\nkernel = \"bzImage\"\n";
	struct vm_config *c = &test_cfg;
	int ret;

	memset(c, 0xa5, sizeof(*c));
	ret = config_parse(NAME, T(text), HOST_RAM, c, NULL, 0);
	CHECK(ret == 0, "returned %d", ret);
	CHECK_S(c->path, NAME);
	CHECK_U(c->memory, 512 * MiB);
	CHECK_U(c->vcpus, 1);
	CHECK_S(c->kernel, "dir/bzImage");
	CHECK_S(c->initrd, "");
	CHECK_S(c->cmdline, "console=ttyS0");
	CHECK_U(c->serial_output, SERIAL_OUT_STDIO);
	CHECK_S(c->serial_path, "");
	CHECK_U(c->n_iothreads, 0);
	CHECK_U(c->line.vm, 1);
	CHECK_U(c->line.kernel, 2);
	CHECK_U(c->line.memory, 0);
	CHECK_U(c->line.initrd, 0);
}

/* Every key set, with comments, odd spacing, suffixes and escapes. */
static void test_full(void)
{
	static const char text[] =
		"# demo\n"
		"\n"
		"  [ vm ]   # the machine\n"
		"memory=0x20M\n"
		"\tvcpus\t=\t4\t# four\n"
		"kernel = \"/boot/vmlinuz\"  # absolute: kept\n"
		"initrd = \"../img/initrd # not a comment\"\n"
		"cmdline = \"console=ttyS0 a=\\\"b c\\\" \\\\ \\t\\n\"\n"
		"[serial]\n"
		"output = \"logs/serial.log\"\n"
		"[iothread.io0]\n"
		"cpus = [ 0 , 3,0x7, ]  # trailing comma\n"
		"poll_max_ns = 32K\n"
		"[iothread.Disk_IO-1]\n"
		"poll_max_ns = 1000000000\n"
		"[iothread.x]\n";
	struct vm_config *c = &test_cfg;
	int ret = config_parse(NAME, T(text), HOST_RAM, c, NULL, 0);

	CHECK(ret == 0, "returned %d", ret);
	CHECK_U(c->memory, 32 * MiB);
	CHECK_U(c->vcpus, 4);
	CHECK_S(c->kernel, "/boot/vmlinuz");
	CHECK_S(c->initrd, "dir/../img/initrd # not a comment");
	CHECK_S(c->cmdline, "console=ttyS0 a=\"b c\" \\ \t\n");
	CHECK_U(c->serial_output, SERIAL_OUT_FILE);
	CHECK_S(c->serial_path, "dir/logs/serial.log");
	CHECK_U(c->line.vm, 3);
	CHECK_U(c->line.memory, 4);
	CHECK_U(c->line.kernel, 6);
	CHECK_U(c->line.initrd, 7);
	CHECK_U(c->line.cmdline, 8);
	CHECK_U(c->n_iothreads, 3);
	CHECK_S(c->iothreads[0].name, "io0");
	CHECK_U(c->iothreads[0].n_cpus, 3);
	CHECK_U(c->iothreads[0].cpus[0], 0);
	CHECK_U(c->iothreads[0].cpus[1], 3);
	CHECK_U(c->iothreads[0].cpus[2], 7);
	CHECK_U(c->iothreads[0].poll_max_ns, 32 * KiB);
	CHECK_S(c->iothreads[1].name, "Disk_IO-1");
	CHECK_U(c->iothreads[1].n_cpus, 0);
	CHECK_U(c->iothreads[1].poll_max_ns, 1000000000);
	CHECK_S(c->iothreads[2].name, "x");
	CHECK_U(c->iothreads[2].n_cpus, 0);
	CHECK_U(c->iothreads[2].poll_max_ns, 0);
}

/* Every disk key; defaults; num_queues from a later [vm]; iothreads named
 * before and after their sections. */
static void test_disks(void)
{
	static const char text[] =
		"[iothread.early]\n"
		"[disk.data]\n"
		"path = \"images/data.raw\"\n"
		"format = \"raw\"\n"
		"readonly = true\n"
		"num_queues = 4\n"
		"queue_size = 1024\n"
		"iothreads = [\"late\", \"early\", ]\n"
		"cache = \"none\"\n"
		"serial = \"01234567890123456789\"\n"
		"[disk.scratch]\n"
		"format = \"null\"\n"
		"size = 0x10000000000\n"
		"queue_size = 16\n"
		"[disk.root]\n"
		"path = \"/dev/vdb\"\n"
		"iothreads = [\"early\"]\n"
		"[iothread.late]\n"
		"[vm]\n"
		"kernel = \"k\"\n"
		"vcpus = 100\n";
	struct vm_config *c = &test_cfg;
	const struct disk_config *d = c->disks;
	char err[256];
	int ret = config_parse(NAME, T(text), HOST_RAM, c, err, sizeof(err));

	CHECK(ret == 0, "%s", err);
	CHECK_U(c->n_disks, 3);
	CHECK_S(d[0].name, "data");
	CHECK_S(d[0].path, "dir/images/data.raw");
	CHECK_U(d[0].format, DISK_FORMAT_RAW);
	CHECK(d[0].readonly, "data: not readonly");
	CHECK_U(d[0].num_queues, 4);
	CHECK_U(d[0].queue_size, 1024);
	CHECK_U(d[0].n_iothreads, 2);
	CHECK_U(d[0].iothreads[0], 1);	/* late: the second [iothread] */
	CHECK_U(d[0].iothreads[1], 0);
	CHECK_U(d[0].cache, DISK_CACHE_NONE);
	CHECK_S(d[0].serial, "01234567890123456789");
	CHECK_U(d[0].size, 0);
	CHECK_U(d[0].line.disk, 2);
	CHECK_U(d[0].line.path, 3);
	CHECK_U(d[0].line.iothreads, 8);
	CHECK_U(d[0].line.serial, 10);
	CHECK_U(d[0].line.size, 0);
	CHECK_S(d[1].name, "scratch");
	CHECK_S(d[1].path, "");
	CHECK_U(d[1].format, DISK_FORMAT_NULL);
	CHECK_U(d[1].size, 1ULL << 40);
	CHECK_U(d[1].queue_size, 16);
	CHECK_U(d[1].num_queues, CONFIG_MAX_QUEUES);	/* 100 vCPUs, capped */
	CHECK_U(d[1].line.size, 13);
	/* The defaults. */
	CHECK_S(d[2].path, "/dev/vdb");
	CHECK_U(d[2].format, DISK_FORMAT_RAW);
	CHECK(!d[2].readonly, "root: readonly");
	CHECK_U(d[2].queue_size, 256);
	CHECK_U(d[2].cache, DISK_CACHE_WRITEBACK);
	CHECK_S(d[2].serial, "");
	CHECK_U(d[2].n_iothreads, 1);
	CHECK_U(d[2].iothreads[0], 0);
	CHECK_U(d[2].line.num_queues, 0);

	ret = config_parse(NAME, T("[disk.d]\npath = \"d.img\"\n[vm]\nkernel = \"k\"\nvcpus = 3\n"),
			   HOST_RAM, c, err, sizeof(err));
	CHECK(ret == 0, "%s", err);
	CHECK_U(c->disks[0].num_queues, 3);
	CHECK_U(c->disks[0].n_iothreads, 0);
	ret = config_parse(NAME, T("[vm]\nkernel = \"k\"\n"), HOST_RAM, c, err, sizeof(err));
	CHECK(ret == 0 && c->n_disks == 0, "no disks: %s", err);
	ret = config_parse(NAME, T("[vm]\nkernel = \"k\"\n[disk.q]\npath = \"q.qcow2\"\n"
				   "l2_cache = 2M\nformat = \"qcow2\"\n[disk.a]\nformat = \"auto\"\n"
				   "path = \"a.img\"\n"), HOST_RAM, c, err, sizeof(err));
	CHECK(ret == 0, "%s", err);
	CHECK_U(c->disks[0].format, DISK_FORMAT_QCOW2);
	CHECK_U(c->disks[0].l2_cache, 2 * MiB);
	CHECK_U(c->disks[0].line.l2_cache, 5);
	CHECK_U(c->disks[1].format, DISK_FORMAT_AUTO);
	CHECK_U(c->disks[1].l2_cache, 0);
}

static void test_sizes(void)
{
	static const struct {
		const char *value;
		uint64_t bytes;
	} cases[] = {
		{ "16M", 16 * MiB }, { "16384K", 16 * MiB }, { "1G", GiB }, { "8G", 8 * GiB },
		{ "0x1000000", 16 * MiB }, { "0X2000000", 32 * MiB }, { "0x4000K", 16 * MiB },
		{ "0xaBcD000", 0xabcd000 }, { "16781312", 16 * MiB + 4 * KiB }, { "0016M", 16 * MiB },
	};
	char text[128];
	unsigned i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(text, sizeof(text), "[vm]\nkernel = \"k\"\nmemory = %s\n", cases[i].value);
		ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, NULL, 0);
		CHECK(ret == 0, "memory = %s: returned %d", cases[i].value, ret);
		CHECK(test_cfg.memory == cases[i].bytes, "memory = %s: got %llu", cases[i].value,
		      (unsigned long long)test_cfg.memory);
	}
}

/* Paths resolve against the config's folder, whatever the caller's cwd. */
static void test_paths(void)
{
	static const struct {
		const char *name, *kernel, *want;
	} cases[] = {
		{ "vm.toml", "k", "k" },
		{ "./vm.toml", "k", "./k" },
		{ "/etc/vmm/vm.toml", "k", "/etc/vmm/k" },
		{ "/vm.toml", "k", "/k" },
		{ "examples/linux.toml", "../out/vmlinuz", "examples/../out/vmlinuz" },
		{ "a/b/c.toml", "/abs", "/abs" },
		{ "a/b/c.toml", "d/e", "a/b/d/e" },
		{ "a/", "k", "a/k" },
	};
	char text[128];
	unsigned i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(text, sizeof(text), "[vm]\nkernel = \"%s\"\n[serial]\noutput = \"%s\"\n",
			 cases[i].kernel, cases[i].kernel);
		ret = config_parse(cases[i].name, text, strlen(text), HOST_RAM, &test_cfg, NULL, 0);
		CHECK(ret == 0, "%s: returned %d", cases[i].name, ret);
		CHECK_S(test_cfg.kernel, cases[i].want);
		CHECK_S(test_cfg.serial_path, cases[i].want);
	}
}

static void test_serial(void)
{
	static const char *const outputs[] = { "stdio", "none", "stdio.log", "./stdio", "/dev/ttyS1" };
	static const enum serial_output kinds[] = {
		SERIAL_OUT_STDIO, SERIAL_OUT_NONE, SERIAL_OUT_FILE, SERIAL_OUT_FILE, SERIAL_OUT_FILE,
	};
	static const char *const paths[] = { "", "", "dir/stdio.log", "dir/./stdio", "/dev/ttyS1" };
	char text[128];
	unsigned i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(outputs); i++) {
		snprintf(text, sizeof(text), "[serial]\noutput = \"%s\"\n[vm]\nkernel = \"k\"\n", outputs[i]);
		ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, NULL, 0);
		CHECK(ret == 0, "output %s: returned %d", outputs[i], ret);
		CHECK_U(test_cfg.serial_output, kinds[i]);
		CHECK_S(test_cfg.serial_path, paths[i]);
	}
}

/* CRLF, a BOM, no final newline, tabs, edge values. */
static void test_edges(void)
{
	static const char crlf[] = "\xef\xbb\xbf[vm]\r\nkernel = \"k\"\r\nvcpus = 254\r\n"
				   "[iothread.a]\r\ncpus = [255]";
	char err[256];
	int ret;

	ret = config_parse(NAME, T(crlf), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "CRLF: %s", err);
	CHECK_S(test_cfg.kernel, "dir/k");
	CHECK_U(test_cfg.vcpus, 254);
	CHECK_U(test_cfg.iothreads[0].n_cpus, 1);
	CHECK_U(test_cfg.iothreads[0].cpus[0], 255);

	/* host_ram 0: no upper bound */
	ret = config_parse(NAME, T("[vm]\nkernel=\"k\"\nmemory=1024G\n"), 0, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "host_ram 0: %s", err);
	CHECK_U(test_cfg.memory, 1024 * GiB);
	ret = config_parse(NAME, T("[vm]\nkernel=\"k\"\nmemory=8G\n"), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "memory = host RAM: %s", err);

	/* The 512M default must fit the host too; reported at [vm]. */
	ret = config_parse(NAME, T("# x\n[vm]\nkernel=\"k\"\n"), 256 * MiB, &test_cfg, err, sizeof(err));
	CHECK(ret == -EINVAL, "small host: returned %d", ret);
	CHECK_S(err, NAME ":2: vm.memory: expected at most 256M (the host's RAM), found the default 512M");
	ret = config_parse(NAME, T("[vm]\nkernel=\"k\"\nmemory=1G\n"), 1000 * MiB + 4 * KiB, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":3: vm.memory: expected at most 1024004K (the host's RAM), found 1G");
	ret = config_parse(NAME, T("[vm]\nkernel=\"k\"\nmemory=256M\n"), 256 * MiB, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "explicit memory on a small host: %s", err);
}

/* Builds "[vm]\nkernel = \"k\"\n" then `key = "<n x fill>"`. */
static char *test_long_value(const char *key, size_t n, char fill)
{
	size_t head = strlen("[vm]\nkernel = \"k\"\n") + strlen(key) + 4;
	char *text = malloc(head + n + 3);

	if (!text)
		abort();
	snprintf(text, head + 1, "[vm]\nkernel = \"k\"\n%s = \"", key);
	memset(text + head, fill, n);
	memcpy(text + head + n, "\"\n", 3);
	return text;
}

static void test_limits(void)
{
	char err[256], *text;
	int ret;

	text = test_long_value("cmdline", CONFIG_CMDLINE_MAX - 1, 'c');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "longest cmdline: %s", err);
	CHECK_U(strlen(test_cfg.cmdline), CONFIG_CMDLINE_MAX - 1);
	free(text);
	text = test_long_value("cmdline", CONFIG_CMDLINE_MAX, 'c');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":3: vm.cmdline: expected at most 2047 bytes, found 2048 bytes");
	free(text);

	/* "dir/" + 4091 bytes = PATH_MAX - 1 */
	text = test_long_value("initrd", PATH_MAX - 5, 'i');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "longest initrd: %s", err);
	CHECK_U(strlen(test_cfg.initrd), PATH_MAX - 1);
	free(text);
	text = test_long_value("initrd", PATH_MAX - 4, 'i');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":3: vm.initrd: expected a path of at most 4095 bytes once resolved, found 4096 bytes");
	free(text);

	/* `initrd = "` is 10 bytes, the closing quote 1 */
	text = test_long_value("initrd", CONFIG_LINE_MAX - 12, 'i');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":3: vm.initrd: expected a path of at most 4095 bytes once resolved, found 8184 bytes");
	free(text);
	text = test_long_value("initrd", CONFIG_LINE_MAX - 11, 'i');
	ret = config_parse(NAME, text, strlen(text), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":3: [vm]: expected a line of at most 8191 bytes, found 8192 bytes");
	free(text);
}

static void test_names_and_counts(void)
{
	char text[CONFIG_MAX_IOTHREADS * 24 + 64], err[256];
	size_t n = 0;
	int i, ret;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "[vm]\nkernel = \"k\"\n");
	for (i = 0; i < CONFIG_MAX_IOTHREADS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "[iothread.t%d]\n", i);
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "64 iothreads: %s", err);
	CHECK_U(test_cfg.n_iothreads, CONFIG_MAX_IOTHREADS);
	CHECK_S(test_cfg.iothreads[CONFIG_MAX_IOTHREADS - 1].name, "t63");
	n += (size_t)snprintf(text + n, sizeof(text) - n, "[iothread.more]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":67: [iothread.more]: expected at most 64 iothreads, found more");

	ret = config_parse(NAME, T("[vm]\nkernel=\"k\"\n[iothread.012345678901234567890123456789"
				   "012345678901234567890123456789012]\n"), HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "63-char name: %s", err);
	CHECK_U(strlen(test_cfg.iothreads[0].name), CONFIG_NAME_MAX - 1);
}

/* 16 disks and no more; 64 IOThread names per disk and across disks. */
static void test_disk_counts(void)
{
	static char text[CONFIG_MAX_QUEUES * 2 * 8 + 1024];
	char err[256];
	size_t n = 0, mark;
	int i, ret;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "[vm]\nkernel = \"k\"\nvcpus = 64\n");
	for (i = 0; i < CONFIG_MAX_DISKS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "[disk.d%d]\npath = \"d%d\"\n", i, i);
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "16 disks: %s", err);
	CHECK_U(test_cfg.n_disks, CONFIG_MAX_DISKS);
	CHECK_S(test_cfg.disks[15].path, "dir/d15");
	mark = n;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "[disk.more]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":36: [disk.more]: expected at most 16 disks, found more");

	/* d15 lists t0..t63; then d14 lists one more name. */
	n = mark;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "iothreads = [");
	for (i = 0; i < CONFIG_MAX_QUEUES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "\"t%d\",", i);
	mark = n;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "]\n");
	for (i = 0; i < CONFIG_MAX_QUEUES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "[iothread.t%d]\n", i);
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "64 iothreads on a disk: %s", err);
	CHECK_U(test_cfg.disks[15].n_iothreads, CONFIG_MAX_QUEUES);
	CHECK_U(test_cfg.disks[15].iothreads[63], 63);
	n = mark;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\"t64\"]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":36: disk.d15.iothreads: expected at most 64 IOThread names, found 65");

	/* Only 64 [iothread] sections can exist: a 65th name cannot match. */
	n = (size_t)snprintf(text, sizeof(text), "[vm]\nkernel = \"k\"\nvcpus = 64\n[disk.a]\n"
			     "path = \"a\"\niothreads = [");
	for (i = 0; i < CONFIG_MAX_QUEUES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "\"t%d\",", i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "]\n[disk.b]\npath = \"b\"\n"
			      "iothreads = [\"t5\", \"new\"]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":9: disk.b.iothreads: expected at most 64 different IOThread names, found more");
}

/* All 256 CPUs, then more elements than any array may hold. */
static void test_big_arrays(void)
{
	char text[CONFIG_MAX_CPUS * 6 + 64], err[256];
	size_t n = 0;
	int i, ret;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "[vm]\nkernel=\"k\"\n[iothread.a]\ncpus = [");
	for (i = CONFIG_MAX_CPUS - 1; i >= 0; i--)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%d,", i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "256 CPUs: %s", err);
	CHECK_U(test_cfg.iothreads[0].n_cpus, CONFIG_MAX_CPUS);
	CHECK_U(test_cfg.iothreads[0].cpus[0], 255);
	CHECK_U(test_cfg.iothreads[0].cpus[255], 0);

	n -= 2;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "0]\n");
	ret = config_parse(NAME, text, n, HOST_RAM, &test_cfg, err, sizeof(err));
	CHECK_S(err, NAME ":4: iothread.a.cpus: expected at most 256 array elements, found more");
}

/* A short buffer gets a terminated prefix; none at all is fine. */
static void test_err_buffer(void)
{
	static const char text[] = "[vmm]\n";
	char full[256], small[12];
	int ret;

	ret = config_parse(NAME, T(text), HOST_RAM, &test_cfg, full, sizeof(full));
	CHECK(ret == -EINVAL, "returned %d", ret);
	memset(small, 'X', sizeof(small));
	ret = config_parse(NAME, T(text), HOST_RAM, &test_cfg, small, sizeof(small));
	CHECK(ret == -EINVAL, "returned %d", ret);
	CHECK(strlen(small) == sizeof(small) - 1 && !strncmp(small, full, sizeof(small) - 1),
	      "got \"%.*s\"", (int)sizeof(small), small);
	ret = config_parse(NAME, T(text), HOST_RAM, &test_cfg, NULL, 0);
	CHECK(ret == -EINVAL, "returned %d", ret);
	ret = config_parse(NAME, NULL, 0, HOST_RAM, &test_cfg, full, sizeof(full));
	CHECK_S(full, NAME ":1: [vm]: expected a [vm] section with kernel = \"PATH\", found end of file");
}

static void test_write(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
}

static void test_load(void)
{
	char dir[] = "/tmp/test_config.XXXXXX", path[64], err[256], want[256];
	char *big;
	int ret;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/vm.toml", dir);
	test_write(path, T("[vm]\nkernel = \"k\"\n"));
	ret = config_load(path, &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "%s", err);
	snprintf(want, sizeof(want), "%s/k", dir);
	CHECK_S(test_cfg.kernel, want);
	CHECK_S(test_cfg.path, path);

	test_write(path, T("[vm]\nkernel = \"k\"\nmemory = 16777216G\n"));
	ret = config_load(path, &test_cfg, err, sizeof(err));
	CHECK(ret == -EINVAL, "returned %d", ret);
	snprintf(want, sizeof(want), "%s:3: vm.memory: expected at most ", path);
	CHECK(!strncmp(err, want, strlen(want)), "got %s", err);

	big = calloc(1, CONFIG_FILE_MAX + 1);
	if (!big)
		abort();
	memset(big, '\n', CONFIG_FILE_MAX + 1);
	test_write(path, big, CONFIG_FILE_MAX + 1);
	ret = config_load(path, &test_cfg, err, sizeof(err));
	CHECK(ret == -EFBIG, "returned %d", ret);
	snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(EFBIG));
	CHECK_S(err, want);
	free(big);
	unlink(path);

	ret = config_load(path, &test_cfg, err, sizeof(err));
	CHECK(ret == -ENOENT, "returned %d", ret);
	snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
	CHECK_S(err, want);
	ret = config_load(dir, &test_cfg, err, sizeof(err));
	CHECK(ret == -EISDIR, "directory: returned %d", ret);
	rmdir(dir);
}

/* Reads the "# expect: MESSAGE" first line of a broken example. */
static int test_expectation(const char *path, char *out, size_t size)
{
	static const char tag[] = "# expect: ";
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	if (strncmp(line, tag, strlen(tag)))
		return -EINVAL;
	line[strcspn(line, "\r\n")] = '\0';
	snprintf(out, size, "%s", line + strlen(tag));
	return 0;
}

/* The examples parse as their comments say (file checks are the vmm's). */
static void test_examples(void)
{
	char path[512], want[512], err[512];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;
	int ret;

	if (access("examples/linux.toml", R_OK)) {
		fprintf(stderr, "note: no examples/ here, run from the repo root to check them\n");
		return;
	}
	ret = config_load("examples/linux.toml", &test_cfg, err, sizeof(err));
	CHECK(ret == 0, "examples/linux.toml: %s", err);
	CHECK_S(test_cfg.kernel, "examples/../guest-images/out/vmlinuz");
	CHECK_S(test_cfg.initrd, "examples/../guest-images/out/demo-initrd.cpio.gz");
	CHECK_U(test_cfg.memory, 512 * MiB);
	CHECK_U(test_cfg.vcpus, 2);
	CHECK_U(test_cfg.n_iothreads, 1);
	d = opendir("examples/broken");
	CHECK(d != NULL, "examples/broken: %s", strerror(errno));
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);

		/* host-*.toml parse fine and fail vmm's host checks
		 * (tests/config/test_broken_examples.sh runs those). */
		if (len < 5 || strcmp(de->d_name + len - 5, ".toml") || !strncmp(de->d_name, "host-", 5))
			continue;
		snprintf(path, sizeof(path), "examples/broken/%s", de->d_name);
		ret = test_expectation(path, want, sizeof(want));
		CHECK(ret == 0, "%s: no \"# expect: \" first line", path);
		ret = config_load(path, &test_cfg, err, sizeof(err));
		CHECK(ret == -EINVAL, "%s: returned %d", path, ret);
		CHECK(strcmp(err, want) == 0, "%s:\n   got: %s\n  want: %s", path, err, want);
		n++;
	}
	if (d)
		closedir(d);
	CHECK(n >= 6, "only %u broken examples", n);
}

int main(void)
{
	test_bad();
	test_defaults();
	test_full();
	test_disks();
	test_disk_counts();
	test_sizes();
	test_paths();
	test_serial();
	test_edges();
	test_limits();
	test_names_and_counts();
	test_big_arrays();
	test_err_buffer();
	test_load();
	test_examples();
	if (test_failures) {
		fprintf(stderr, "test_config: %d checks failed\n", test_failures);
		return 1;
	}
	printf("test_config: %zu malformed inputs and all valid cases passed\n",
	       ARRAY_SIZE(test_bad_cases));
	return 0;
}
