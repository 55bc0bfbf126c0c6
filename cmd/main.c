/* agentgate: subcommand dispatch (temporary stub until serve lands). */
int main(void)
{
    return 0;
}
