"""What ``fabfile.py``'s tasks call: the only place that turns the project's errors into exit
codes and messages for the operator. Imports any package below it, none imports it."""
