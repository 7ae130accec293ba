/* A load and a signed addition: what ASan and UBSan instrument. */
int redtls_probe(const int *values, int i);

int redtls_probe(const int *values, int i)
{
    return values[i] + i;
}
