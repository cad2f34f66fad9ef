/*
 * Multiboot v1 entry of the qtrace probe guest.
 *
 * QEMU's -kernel loader finds the header below in the first 8 KiB of the ELF, loads the
 * segments at 1 MiB and jumps to _start in 32-bit protected mode with paging off,
 * EAX = 0x2BADB002 and EBX = the multiboot information structure.  The loader's GDT is
 * not guaranteed to stay valid, so we install our own flat one before using the stack.
 */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, ask for memory info */

    .section .multiboot, "a"
    .p2align 2
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .rodata
    .p2align 3
gdt:
    .quad 0x0000000000000000 /* null */
    .quad 0x00cf9a000000ffff /* 0x08: code, base 0, limit 4 GiB, 32-bit */
    .quad 0x00cf92000000ffff /* 0x10: data, base 0, limit 4 GiB */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    .section .bss
    .p2align 4
stack_bottom:
    .skip 16384
stack_top:

    .text
    .globl _start
    .type _start, @function
_start:
    cli
    movl %eax, %edi             /* keep the multiboot magic */
    movl %ebx, %esi             /* and the info pointer */
    /* First action: the "guest started" marker for qtrace (isa-debugcon at 0xE9). */
    movb $'Q', %al
    outb %al, $0xe9

    lgdt gdt_desc
    ljmp $0x08, $1f
1:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    /* Zero .bss ourselves rather than trusting the loader.  The stack lives there too,
     * so this happens before anything is pushed; EDI/ESI are parked in EBP/EBX. */
    movl %edi, %ebp
    movl %esi, %ebx
    cld
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl $stack_top, %esp

    pushl %ebx                  /* probe_main(magic, info) */
    pushl %ebp
    call probe_main
2:
    cli
    hlt
    jmp 2b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
