/*
 * The egress filter of a sandbox's network: compiles an ordered rule list into eBPF programs and
 * attaches them to a cgroup v2 directory, where they decide every connect() and UDP sendto() of the
 * processes inside it (the sandbox's user-mode NAT, slirp4netns, which opens the host-side sockets
 * for the sandbox's traffic). The filter lives in the host's kernel, outside every namespace of the
 * sandbox: nothing the sandbox's root does reaches it. The programs stay attached until the cgroup
 * is removed.
 *
 *   egress-filter <cgroup v2 dir> <rule>... default allow|deny
 *   rule: allow|deny <cidr> tcp|udp|any <port, 0 = any>
 *
 * The first matching rule decides. IPv4-mapped IPv6 destinations (::ffff:a.b.c.d) are judged by the
 * IPv4 rules. Raw and ICMP sockets cannot be created at all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_RULES 512
#define MAX_INSNS 8192

struct rule {
  int allow;
  int family; /* AF_INET or AF_INET6 */
  uint32_t addr[4]; /* network byte order words, as the kernel's bpf_sock_addr holds them */
  uint32_t mask[4];
  int sock_type; /* 0 = any, SOCK_STREAM, SOCK_DGRAM */
  uint32_t port; /* network byte order in the low 16 bits, 0 = any */
};

static struct rule rules[MAX_RULES];
static int rule_count;
static int default_allow;

static void die(const char *what) {
  fprintf(stderr, "egress-filter: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void die_msg(const char *what, const char *detail) {
  fprintf(stderr, "egress-filter: %s: %s\n", what, detail);
  exit(2);
}

/* ---- rules ---- */

static void parse_cidr(const char *text, struct rule *rule) {
  char address[INET6_ADDRSTRLEN + 8];
  const char *slash = strchr(text, '/');
  size_t length = slash ? (size_t)(slash - text) : strlen(text);
  if (length >= sizeof(address)) die_msg("address too long", text);
  memcpy(address, text, length);
  address[length] = '\0';
  rule->family = strchr(address, ':') ? AF_INET6 : AF_INET;
  int bits = rule->family == AF_INET ? 32 : 128;
  int prefix = bits;
  if (slash) {
    char *end;
    long parsed = strtol(slash + 1, &end, 10);
    if (*end != '\0' || parsed < 0 || parsed > bits) die_msg("bad prefix", text);
    prefix = (int)parsed;
  }
  unsigned char bytes[16] = {0};
  if (inet_pton(rule->family, address, bytes) != 1) die_msg("bad address", text);
  unsigned char mask_bytes[16] = {0};
  for (int bit = 0; bit < prefix; bit++) mask_bytes[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
  for (int index = 0; index < bits / 8; index++) bytes[index] &= mask_bytes[index];
  memcpy(rule->addr, bytes, bits / 8);
  memcpy(rule->mask, mask_bytes, bits / 8);
}

static void parse_rules(int argc, char **argv) {
  int index = 0;
  while (index < argc) {
    if (strcmp(argv[index], "default") == 0 && index + 2 == argc) {
      if (strcmp(argv[index + 1], "allow") != 0 && strcmp(argv[index + 1], "deny") != 0) die_msg("bad default", argv[index + 1]);
      default_allow = strcmp(argv[index + 1], "allow") == 0;
      return;
    }
    if (index + 4 > argc) die_msg("incomplete rule", argv[index]);
    if (rule_count == MAX_RULES) die_msg("too many rules", argv[index]);
    struct rule *rule = &rules[rule_count++];
    if (strcmp(argv[index], "allow") == 0) rule->allow = 1;
    else if (strcmp(argv[index], "deny") != 0) die_msg("a rule starts with allow or deny", argv[index]);
    parse_cidr(argv[index + 1], rule);
    const char *protocol = argv[index + 2];
    rule->sock_type = strcmp(protocol, "tcp") == 0 ? SOCK_STREAM : strcmp(protocol, "udp") == 0 ? SOCK_DGRAM : 0;
    if (rule->sock_type == 0 && strcmp(protocol, "any") != 0) die_msg("bad protocol", protocol);
    char *end;
    long port = strtol(argv[index + 3], &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) die_msg("bad port", argv[index + 3]);
    rule->port = htons((uint16_t)port);
    index += 4;
  }
  die_msg("missing", "default allow|deny");
}

/* ---- a tiny eBPF assembler ---- */

static struct bpf_insn program[MAX_INSNS];
static int length;

static void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  if (length == MAX_INSNS) die_msg("program too long", "reduce the rules");
  program[length++] = (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

static void load_word(uint8_t dst, int16_t offset) { emit(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_6, offset, 0); }
static void move_reg(uint8_t dst, uint8_t src) { emit(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
static void and_imm32(uint8_t dst, uint32_t value) { emit(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, (int32_t)value); }
static void return_value(int value) {
  emit(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, value);
  emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}
/* `if dst != value goto <patched later>`; returns the instruction's index. */
static int jump_if_not_equal(uint8_t dst, uint32_t value) {
  emit(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, 0, (int32_t)value);
  return length - 1;
}
static void land_here(int jump) { program[jump].off = (int16_t)(length - jump - 1); }

/* Registers: r6 ctx, r2..r5 address words (r5 alone for IPv4), r7 port, r8 socket type, r9 scratch. */
static const uint8_t ADDRESS_REGS[4] = {BPF_REG_2, BPF_REG_3, BPF_REG_4, BPF_REG_5};

/* One rule: jumps past itself unless every part matches, else returns its verdict. False when it matches everything. */
static int emit_rule(const struct rule *rule, const uint8_t *regs, int words) {
  int misses[8];
  int miss_count = 0;
  for (int word = 0; word < words; word++) {
    if (rule->mask[word] == 0) continue;
    move_reg(BPF_REG_9, regs[word]);
    and_imm32(BPF_REG_9, rule->mask[word]);
    misses[miss_count++] = jump_if_not_equal(BPF_REG_9, rule->addr[word]);
  }
  if (rule->port) misses[miss_count++] = jump_if_not_equal(BPF_REG_7, rule->port);
  if (rule->sock_type) misses[miss_count++] = jump_if_not_equal(BPF_REG_8, (uint32_t)rule->sock_type);
  return_value(rule->allow);
  for (int miss = 0; miss < miss_count; miss++) land_here(misses[miss]);
  return miss_count > 0;
}

/* The rules of one family, then the default; the verifier refuses code after a rule that matches everything. */
static void emit_rules(int family, const uint8_t *regs, int words) {
  for (int index = 0; index < rule_count; index++) {
    if (rules[index].family == family && !emit_rule(&rules[index], regs, words)) return;
  }
  return_value(default_allow);
}

static void emit_prologue(void) {
  move_reg(BPF_REG_6, BPF_REG_1);
  load_word(BPF_REG_7, offsetof(struct bpf_sock_addr, user_port));
  load_word(BPF_REG_8, offsetof(struct bpf_sock_addr, type));
}

static void build_ipv4_program(void) {
  length = 0;
  emit_prologue();
  load_word(BPF_REG_5, offsetof(struct bpf_sock_addr, user_ip4));
  emit_rules(AF_INET, &ADDRESS_REGS[3], 1);
}

static void build_ipv6_program(void) {
  length = 0;
  emit_prologue();
  for (int word = 0; word < 4; word++) load_word(ADDRESS_REGS[word], (int16_t)(offsetof(struct bpf_sock_addr, user_ip6) + 4 * word));
  int not_mapped[3] = {
      jump_if_not_equal(BPF_REG_2, 0),
      jump_if_not_equal(BPF_REG_3, 0),
      jump_if_not_equal(BPF_REG_4, htonl(0xffff)),
  };
  emit_rules(AF_INET, &ADDRESS_REGS[3], 1);
  for (int index = 0; index < 3; index++) land_here(not_mapped[index]);
  emit_rules(AF_INET6, ADDRESS_REGS, 4);
}

/* Sockets of the NAT: only TCP and UDP (no raw sockets, no ICMP echo probing the host's networks). */
static void build_socket_program(void) {
  length = 0;
  move_reg(BPF_REG_6, BPF_REG_1);
  load_word(BPF_REG_7, offsetof(struct bpf_sock, type));
  int stream = jump_if_not_equal(BPF_REG_7, SOCK_STREAM);
  return_value(1);
  land_here(stream);
  int datagram = jump_if_not_equal(BPF_REG_7, SOCK_DGRAM);
  load_word(BPF_REG_8, offsetof(struct bpf_sock, protocol));
  int icmp = jump_if_not_equal(BPF_REG_8, IPPROTO_ICMP);
  return_value(0);
  land_here(icmp);
  int icmp6 = jump_if_not_equal(BPF_REG_8, IPPROTO_ICMPV6);
  return_value(0);
  land_here(icmp6);
  return_value(1);
  land_here(datagram);
  return_value(0);
}

/* ---- the kernel ---- */

static char verifier_log[65536];

static int load(enum bpf_prog_type type, enum bpf_attach_type attach_type) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.prog_type = type;
  attr.expected_attach_type = attach_type;
  attr.insns = (uint64_t)(uintptr_t)program;
  attr.insn_cnt = (uint32_t)length;
  attr.license = (uint64_t)(uintptr_t)"GPL";
  attr.log_buf = (uint64_t)(uintptr_t)verifier_log;
  attr.log_size = sizeof(verifier_log);
  attr.log_level = 1;
  int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
  if (fd < 0) {
    fprintf(stderr, "%s\n", verifier_log);
    die("BPF_PROG_LOAD");
  }
  return fd;
}

static void attach(int cgroup, int program_fd, enum bpf_attach_type attach_type) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.target_fd = (uint32_t)cgroup;
  attr.attach_bpf_fd = (uint32_t)program_fd;
  attr.attach_type = attach_type;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr)) != 0) die("BPF_PROG_ATTACH");
  close(program_fd);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: egress-filter <cgroup v2 dir> [allow|deny <cidr> tcp|udp|any <port>]... default allow|deny\n");
    return 2;
  }
  parse_rules(argc - 2, argv + 2);
  int cgroup = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup < 0) die(argv[1]);
  /* Socket creation first: nothing below runs with a half-built filter in place that allows too much. */
  build_socket_program();
  attach(cgroup, load(BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE), BPF_CGROUP_INET_SOCK_CREATE);
  build_ipv4_program();
  attach(cgroup, load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT), BPF_CGROUP_INET4_CONNECT);
  attach(cgroup, load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG), BPF_CGROUP_UDP4_SENDMSG);
  build_ipv6_program();
  attach(cgroup, load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT), BPF_CGROUP_INET6_CONNECT);
  attach(cgroup, load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG), BPF_CGROUP_UDP6_SENDMSG);
  return 0;
}
