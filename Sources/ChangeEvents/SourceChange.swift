enum ChangeEventsPlaceholder {}
